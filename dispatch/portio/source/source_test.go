//go:build linux

package source_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/nats-io/nats.go"
	"go.uber.org/goleak"

	"github.com/serialcbd/serialcbd/asyncloop"
	"github.com/serialcbd/serialcbd/dispatch/portio"
	"github.com/serialcbd/serialcbd/dispatch/portio/source"
	"github.com/serialcbd/serialcbd/serialcb"
	"github.com/serialcbd/serialcbd/serialcb/vport"
	"github.com/serialcbd/serialcbd/serialcb/vport/meter"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	mosquitto = "127.0.0.1:1883"
	natsAddr  = "127.0.0.1:4222"
)

// need skips (fails under CI=true) when the shared service is not there.
func need(t *testing.T, addr, what string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err == nil {
		_ = conn.Close()
		return
	}
	msg := fmt.Sprintf("no %s at %s (%v)", what, addr, err)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

func uniq() string { return fmt.Sprintf("%d-%x", os.Getpid(), rand.Uint64()) }

// chain is a meter on a pty, its Reader and a writable Port.
func chain(t *testing.T) (*portio.Port, *meter.Meter) {
	t.Helper()
	pair, err := vport.Open()
	if err != nil {
		t.Fatal(err)
	}
	framer, _ := serialcb.ParseFraming("idle:3.5c")
	r, err := serialcb.NewReader(serialcb.PortConfig{Name: "meter", Path: pair.Path(), Baud: 9600, Framer: framer}, nil)
	if err != nil {
		t.Fatal(err)
	}
	loop := asyncloop.New(asyncloop.Options{})
	loop.Start()
	p, err := portio.New(loop, r, portio.Config{Port: "meter", Writable: true, PerSecond: 1000, Queue: 64}, nil)
	if err != nil {
		t.Fatal(err)
	}
	m := &meter.Meter{Delay: time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = m.Serve(ctx, pair) })
	wg.Go(func() {
		_ = r.Run(ctx, func(f serialcb.Frame) { p.OnFrame(&f, serialcb.CRC16Modbus{}.Valid(f.Payload)) })
	})
	<-r.Opened()
	p.Start(nil)
	t.Cleanup(func() {
		p.Stop()
		<-p.Idle()
		cancel()
		pair.Close()
		wg.Wait()
		loop.Shutdown(context.Background())
	})
	return p, m
}

func waitReady(t *testing.T, s *source.Source) {
	t.Helper()
	select {
	case <-s.Ready():
	case <-t.Context().Done():
		t.Fatal("source never subscribed")
	}
}

// payloads are binary and distinct, so byte-exactness shows.
func payloads(n int) [][]byte {
	var out [][]byte
	for i := range n {
		out = append(out, []byte{0x00, 0xff, '\n', byte(i), 0x7f, '"', '\\'})
	}
	return out
}

func checkReceived(t *testing.T, m *meter.Meter, want [][]byte) {
	t.Helper()
	inOrder := func(got []byte) bool {
		for _, w := range want {
			j := bytes.Index(got, w)
			if j < 0 {
				return false
			}
			got = got[j+len(w):]
		}
		return true
	}
	if m.WaitReceived(t.Context(), inOrder) {
		return
	}
	got := m.Received()
	for i, w := range want {
		j := bytes.Index(got, w)
		if j < 0 {
			t.Fatalf("write %d (%x) did not reach the device byte-exact; it got %x", i, w, got)
		}
		got = got[j+len(w):]
	}
}

func TestIntegrationMQTTWrites(t *testing.T) {
	need(t, mosquitto, "MQTT broker")
	p, m := chain(t)
	topic := "serialcbd-test/" + uniq() + "/meter/write"
	src, err := source.Start(t.Context(), source.Config{URL: "mqtt://" + mosquitto + "/" + topic, Port: "meter"}, p, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	waitReady(t, src)

	results := make(chan portio.Outcome, 16)
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker("tcp://" + mosquitto).SetClientID("test-" + uniq()))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	defer c.Disconnect(100)
	tok := c.Subscribe(topic+"/result", 1, func(_ mqtt.Client, msg mqtt.Message) {
		var o portio.Outcome
		if err := json.Unmarshal(msg.Payload(), &o); err != nil {
			t.Errorf("result %s: %v", msg.Payload(), err)
		}
		results <- o
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	want := payloads(5)
	for _, b := range want {
		if tok := c.Publish(topic, 1, false, b); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("publish: %v", tok.Error())
		}
	}
	for i := range want {
		select {
		case o := <-results:
			if !o.OK || o.Bytes != len(want[i]) || o.Source != "mqtt" || o.RequestID == (serialcb.ID{}) {
				t.Fatalf("outcome %d: %+v", i, o)
			}
		case <-t.Context().Done():
			t.Fatalf("no outcome %d on %s/result", i, topic)
		}
	}
	checkReceived(t, m, want)
}

func TestIntegrationNATSWrites(t *testing.T) {
	need(t, natsAddr, "NATS server")
	p, m := chain(t)
	subject := "serialcbd-test." + uniq() + ".meter.write"
	src, err := source.Start(t.Context(), source.Config{URL: "nats://" + natsAddr + "/" + subject, Port: "meter"}, p, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	waitReady(t, src)
	nc, err := nats.Connect("nats://" + natsAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	want := payloads(5)
	for i, b := range want {
		msg, err := nc.RequestWithContext(t.Context(), subject, b)
		if err != nil {
			t.Fatal(err)
		}
		var o portio.Outcome
		if err := json.Unmarshal(msg.Data, &o); err != nil || !o.OK || o.Bytes != len(b) || o.Source != "nats" {
			t.Fatalf("reply %d: %s (%v)", i, msg.Data, err)
		}
	}
	// A write that is a request: the reply carries the meter's answer.
	src2, err := source.Start(t.Context(), source.Config{URL: "nats://" + natsAddr + "/" + subject + ".req", Port: "meter", ExpectReply: true}, p, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer src2.Close()
	waitReady(t, src2)
	msg, err := nc.RequestWithContext(t.Context(), subject+".req", meter.Request(1, 3, 0, 2))
	if err != nil {
		t.Fatal(err)
	}
	var o struct {
		OK    bool `json:"ok"`
		Reply struct {
			Payload string `json:"payload"`
		} `json:"reply"`
	}
	if err := json.Unmarshal(msg.Data, &o); err != nil || !o.OK || o.Reply.Payload == "" {
		t.Fatalf("request reply: %s (%v)", msg.Data, err)
	}
	checkReceived(t, m, want)
}
