//go:build linux

package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/nats-io/nats.go"
	"go.uber.org/zap"

	"github.com/serialcbd/serialcbd/serialcb/vport"
	modbus "github.com/serialcbd/serialcbd/serialcb/vport/meter"
)

// meterRecord is a record of the file sink with the poll fields.
type meterRecord struct {
	Port    string `json:"port"`
	Payload string `json:"payload"`
	Enc     string `json:"encoding"`
	Fields  struct {
		Poll      string `json:"poll"`
		RequestID string `json:"request_id"`
		RTT       *int64 `json:"rtt_us"`
	} `json:"fields"`
}

func meterRecords(t *testing.T, path string) []meterRecord {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []meterRecord
	for _, line := range bytes.Split(data, []byte("\n")) {
		var r meterRecord
		if len(line) == 0 || json.Unmarshal(line, &r) != nil {
			continue // the last line may be half written
		}
		out = append(out, r)
	}
	return out
}

func polledReplies(t *testing.T, path, poll string) int {
	n := 0
	for _, r := range meterRecords(t, path) {
		if r.Fields.Poll == poll {
			n++
		}
	}
	return n
}

// startMeter plays a Modbus meter on a new virtual port.
func startMeter(t *testing.T, m *modbus.Meter) *vport.Pair {
	t.Helper()
	pair, err := vport.Open()
	if err != nil {
		t.Skipf("no virtual ports: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = m.Serve(ctx, pair) })
	t.Cleanup(func() { cancel(); pair.Close(); wg.Wait() })
	return pair
}

const meterConfig = `ports:
  - name: meter
    path: %s
    baud: 9600
    parity: even
    framing: idle:3.5c
    validate: crc16-modbus
    poll:
      - name: %s
        every: %s
        send: "hex:010300000002C40B"
        reply_timeout: 200ms
        retries: 1
    write:
      http: true
      token_env: %s
sinks:
  - name: out
    url: file:%s
`

// The daemon polls a meter on a virtual port and stores every reply with
// its poll fields; an HTTP write reaches the device byte-exact; a SIGHUP
// mid-poll swaps the schedule without losing or mismatching a reply.
func TestIntegrationDaemonPollsAndWrites(t *testing.T) {
	m := &modbus.Meter{Delay: 3 * time.Millisecond, Fault: func(n uint64) modbus.Fault {
		if n%10 == 0 {
			return modbus.Garble
		}
		return modbus.OK
	}}
	pair := startMeter(t, m)
	dir := t.TempDir()
	out := filepath.Join(dir, "out.jsonl")
	file := filepath.Join(dir, "config.yaml")
	tokenEnv := fmt.Sprintf("SERIALCBD_TEST_TOKEN_%d", os.Getpid())
	t.Setenv(tokenEnv, "tok")
	writeConfig(t, file, fmt.Sprintf(meterConfig, pair.Path(), "energy", "100ms", tokenEnv, out))
	r := runFromFile(t, file)
	ln, err := ListenMetrics("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ms := ServeMetrics(ln, r.d, zap.NewNop())
	defer ms.Close()
	base := "http://" + ln.Addr().String()

	within(t, "10 polled replies", func() bool { return polledReplies(t, out, "energy") >= 10 })

	post := func(path, token string, body []byte) (int, string) {
		req, _ := http.NewRequest(http.MethodPost, base+path, bytes.NewReader(body))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	write := []byte{0x01, 0x06, 0x00, 0x10, 0x00, 0x01, 0x49, 0xcf}
	if code, body := post("/ports/meter/write", "tok", write); code != 200 || !strings.Contains(body, `"ok":true`) {
		t.Fatalf("write: %d %s", code, body)
	}
	if code, _ := post("/ports/meter/write", "", write); code != 401 {
		t.Fatalf("without token: %d", code)
	}
	if code, _ := post("/ports/nope/write", "tok", write); code != 404 {
		t.Fatalf("unknown port: %d", code)
	}
	if !m.WaitReceived(t.Context(), func(b []byte) bool { return bytes.Contains(b, write) }) {
		t.Fatal("write did not reach the device")
	}

	// Reload mid-poll: a new poll name and period.
	writeConfig(t, file, fmt.Sprintf(meterConfig, pair.Path(), "energy2", "50ms", tokenEnv, out))
	hangup(t, r, "config reloaded", 1)
	within(t, "10 replies of the reloaded poll", func() bool { return polledReplies(t, out, "energy2") >= 10 })
	if code, _ := post("/ports/meter/write", "tok", []byte("after reload")); code != 200 {
		t.Fatalf("write after reload: %d", code)
	}
	scrape, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(scrape.Body)
	scrape.Body.Close()
	r.stop()

	for _, want := range []string{`serialcbd_poll_replies_total{poll="energy2",port="meter"}`, `serialcbd_port_writes_total{port="meter",result="ok"}`} {
		if !bytes.Contains(metrics, []byte(want)) {
			t.Errorf("metrics lack %s", want)
		}
	}
	// Every record is a reply with fields, or a late reply without; no
	// request id twice.
	seen := map[string]bool{}
	replies := 0
	for _, rec := range meterRecords(t, out) {
		if rec.Fields.RequestID == "" {
			continue
		}
		if seen[rec.Fields.RequestID] || rec.Fields.RTT == nil {
			t.Fatalf("record %+v", rec)
		}
		seen[rec.Fields.RequestID] = true
		replies++
	}
	st := r.d.current().tw.ports[0].p.Stats().Polls[0]
	t.Logf("replies stored: %d; reloaded poll %+v; meter saw %d requests", replies, st, m.Requests())
	if replies < 20 {
		t.Fatalf("only %d replies stored", replies)
	}
}

const brokerWriteConfig = `ports:
  - name: meter
    path: %s
    framing: idle:3.5c
    write:
      from: ["mqtt://127.0.0.1:1883/%s/write", "nats://127.0.0.1:4222/%s.write"]
sinks:
  - name: out
    url: file:%s
`

// Writes from MQTT and NATS, configured in the file, reach the device end
// byte-exact with their outcomes reported.
func TestIntegrationDaemonWritesFromBrokers(t *testing.T) {
	needServer(t, "Mosquitto", "127.0.0.1:1883", "mosquitto -d -c /etc/mosquitto/mosquitto.conf")
	needServer(t, "NATS", "127.0.0.1:4222", "start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log")
	m := &modbus.Meter{}
	pair := startMeter(t, m)
	dir := t.TempDir()
	tag := fmt.Sprintf("serialcbd-twoway-%d-%d", os.Getpid(), time.Now().UnixNano())
	file := filepath.Join(dir, "config.yaml")
	writeConfig(t, file, fmt.Sprintf(brokerWriteConfig, pair.Path(), tag, tag, filepath.Join(dir, "out.jsonl")))
	r := runFromFile(t, file)
	defer r.stop()
	for _, s := range r.d.current().tw.ports[0].sources {
		select {
		case <-s.Ready():
		case <-t.Context().Done():
			t.Fatal("write source never subscribed")
		}
	}

	results := make(chan []byte, 4)
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker("tcp://127.0.0.1:1883").SetClientID(tag + "-client"))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("mqtt connect: %v", tok.Error())
	}
	defer c.Disconnect(100)
	if tok := c.Subscribe(tag+"/write/result", 1, func(_ mqtt.Client, msg mqtt.Message) { results <- msg.Payload() }); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	viaMQTT := []byte{0x01, 0x06, 0x00, 0x10, 0x00, 0x01, 0x49, 0xcf}
	if tok := c.Publish(tag+"/write", 1, false, viaMQTT); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish: %v", tok.Error())
	}
	select {
	case res := <-results:
		if !bytes.Contains(res, []byte(`"ok":true`)) || !bytes.Contains(res, []byte(`"source":"mqtt"`)) {
			t.Fatalf("mqtt outcome %s", res)
		}
	case <-t.Context().Done():
		t.Fatal("no outcome on TOPIC/result")
	}

	nc, err := nats.Connect("nats://127.0.0.1:4222")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	viaNATS := []byte("\x00NATS\xff\r\n")
	msg, err := nc.RequestWithContext(t.Context(), tag+".write", viaNATS)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(msg.Data, []byte(`"ok":true`)) || !bytes.Contains(msg.Data, []byte(`"bytes":8`)) {
		t.Fatalf("nats outcome %s", msg.Data)
	}
	if !m.WaitReceived(t.Context(), func(b []byte) bool { return bytes.Contains(b, viaMQTT) && bytes.Contains(b, viaNATS) }) {
		t.Fatalf("device got %x", m.Received())
	}
}

// A poll that gets no reply after its retries is a dead letter: the
// request, the error and the attempts, where `serialcbd spool` looks.
func TestIntegrationDaemonFailedPollDeadLetter(t *testing.T) {
	m := &modbus.Meter{Fault: func(uint64) modbus.Fault { return modbus.Drop }}
	pair := startMeter(t, m)
	dir := t.TempDir()
	file := filepath.Join(dir, "config.yaml")
	writeConfig(t, file, fmt.Sprintf(`ports:
  - name: meter
    path: %s
    framing: idle:3.5c
    poll:
      - name: energy
        every: 100ms
        send: "hex:010300000002C40B"
        reply_timeout: 30ms
        retries: 1
sinks:
  - name: out
    url: file:%s
`, pair.Path(), filepath.Join(dir, "out.jsonl")))
	r := runFromFile(t, file)
	dead := filepath.Join(dir, "state", "poll.meter", "dead.jsonl")
	within(t, "2 dead letters", func() bool { return complete(t, dead) >= 2 })
	r.stop()
	data, err := os.ReadFile(dead)
	if err != nil {
		t.Fatal(err)
	}
	line := strings.SplitN(string(data), "\n", 2)[0]
	for _, want := range []string{`"sink":"poll:energy"`, `no reply within the reply timeout (after 2 attempts)`, `"attempts":2`, `"port":"meter"`} {
		if !strings.Contains(line, want) {
			t.Errorf("dead letter %s lacks %s", line, want)
		}
	}
}
