//go:build linux

package portio_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/serialcbd/serialcbd/asyncloop"
	"github.com/serialcbd/serialcbd/dispatch/portio"
	"github.com/serialcbd/serialcbd/serialcb"
	"github.com/serialcbd/serialcbd/serialcb/vport"
	"github.com/serialcbd/serialcbd/serialcb/vport/meter"
)

// ptyRig is the real chain: a simulated meter on the device end of a pty,
// a Reader with idle framing on the other, its frame callback validating
// CRC-16/MODBUS and handing frames to a Port, and the event loop.
type ptyRig struct {
	pair   *vport.Pair
	m      *meter.Meter
	r      *serialcb.Reader
	loop   *asyncloop.Loop
	p      *portio.Port
	out    outcomes
	mu     sync.Mutex
	frames []serialcb.Frame // valid frames, as the sinks would get them
	stop   func()
}

func newPtyRig(t *testing.T, m *meter.Meter, cfg portio.Config) *ptyRig {
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
	g := &ptyRig{pair: pair, m: m, r: r, loop: asyncloop.New(asyncloop.Options{})}
	g.loop.Start()
	cfg.Port = "meter"
	cfg.OnPoll = g.out.add
	if g.p, err = portio.New(g.loop, r, cfg, nil); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = m.Serve(ctx, pair) })
	wg.Go(func() {
		_ = r.Run(ctx, func(f serialcb.Frame) {
			err := serialcb.CRC16Modbus{}.Valid(f.Payload)
			g.p.OnFrame(&f, err)
			if err == nil {
				g.mu.Lock()
				g.frames = append(g.frames, f)
				g.mu.Unlock()
			}
		})
	})
	<-r.Opened()
	once := sync.Once{}
	g.stop = func() {
		once.Do(func() {
			g.p.Stop()
			<-g.p.Idle()
			g.p.Wait()
			cancel()
			pair.Close()
			wg.Wait()
			g.loop.Shutdown(context.Background())
		})
	}
	t.Cleanup(g.stop)
	return g
}

// pollSeconds is how long TestPollMeterOverPty polls; the acceptance run
// is a minute: SERIALCBD_POLL_SECONDS=60 go test -run TestPollMeterOverPty ./dispatch/portio
func pollSeconds(t *testing.T) time.Duration {
	if s := os.Getenv("SERIALCBD_POLL_SECONDS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			t.Fatalf("SERIALCBD_POLL_SECONDS=%q", s)
		}
		return time.Duration(n) * time.Second
	}
	return 2 * time.Second
}

// A Modbus meter polled every 100 ms, answering after 5 ms, every 9th
// reply garbled and every 13th dropped: every poll ends as a stored reply
// or an accounted miss, and every stored reply is the one its request
// asked for.
func TestPollMeterOverPty(t *testing.T) {
	m := &meter.Meter{Delay: 5 * time.Millisecond, Fault: func(n uint64) meter.Fault {
		switch {
		case n%13 == 0:
			return meter.Drop
		case n%9 == 0:
			return meter.Garble
		}
		return meter.OK
	}}
	poll := portio.Poll{Name: "energy", Every: 100 * time.Millisecond, Send: meter.Request(1, 3, 0, 2), ReplyTimeout: 80 * time.Millisecond, Retries: 1}
	g := newPtyRig(t, m, portio.Config{Polls: []portio.Poll{poll}})
	g.p.Start(nil)
	time.Sleep(pollSeconds(t))
	g.stop()

	s := g.p.Stats().Polls[0]
	polls := uint64(len(g.out.ok) + len(g.out.errs))
	t.Logf("%d polls: %d replies, %d failed, %d skipped; %d sent, %d timeouts, %d invalid; meter saw %d requests",
		polls, len(g.out.ok), len(g.out.errs), s.Skipped, s.Sent, s.Timeouts, s.Invalid, m.Requests())
	if polls == 0 || s.Replies != uint64(len(g.out.ok)) || s.Failed != uint64(len(g.out.errs)) {
		t.Fatalf("outcomes %d ok, %d failed; stats %+v", len(g.out.ok), len(g.out.errs), s)
	}
	if s.Sent != m.Requests() || s.Sent != s.Replies+s.Timeouts+s.Invalid {
		t.Fatalf("attempts not accounted for: %+v, meter saw %d", s, m.Requests())
	}
	// Every miss is accounted for: no reply after the retries, or (on a
	// machine so loaded that a request could not go out within its period)
	// a request dropped unsent rather than sent stale.
	kinds := map[string]int{}
	for _, err := range g.out.errs {
		switch {
		case errors.Is(err, portio.ErrReplyTimeout):
			kinds["timeout"]++
		case errors.Is(err, portio.ErrInvalidReply):
			kinds["invalid"]++
		case errors.Is(err, serialcb.ErrWriteExpired):
			kinds["expired"]++
		default:
			t.Fatalf("poll failed with %v", err)
		}
	}
	t.Logf("failed polls by cause: %v", kinds)
	// Each reply record carries its request's id, and answers it: the
	// meter's register 0 holds the number of the request it answers.
	byID := map[string]serialcb.Frame{}
	late := 0
	for _, f := range g.frames {
		if f.Fields == nil {
			late++ // a reply after its timeout: stored as an unsolicited frame
			continue
		}
		var fl struct {
			Poll      string `json:"poll"`
			RequestID string `json:"request_id"`
		}
		if err := json.Unmarshal(f.Fields, &fl); err != nil {
			t.Fatalf("reply record fields %s: %v", f.Fields, err)
		}
		if fl.Poll != "energy" {
			t.Fatalf("reply record fields %s", f.Fields)
		}
		byID[fl.RequestID] = f
	}
	for _, o := range g.out.ok {
		f, ok := byID[o.RequestID.String()]
		if !ok || !bytes.Equal(f.Payload, o.Reply.Payload) {
			t.Fatalf("reply of %s not stored", o.RequestID)
		}
	}
	if len(byID) != len(g.out.ok) || late > int(s.Timeouts) {
		t.Fatalf("%d reply records for %d replies; %d late replies for %d timeouts", len(byID), len(g.out.ok), late, s.Timeouts)
	}
}

// Writes reach the device end byte-exact, between the meter's replies.
func TestWritesOverPty(t *testing.T) {
	m := &meter.Meter{Delay: 2 * time.Millisecond}
	poll := portio.Poll{Name: "energy", Every: 20 * time.Millisecond, Send: meter.Request(1, 3, 0, 2), ReplyTimeout: 100 * time.Millisecond}
	g := newPtyRig(t, m, portio.Config{Polls: []portio.Poll{poll}, Writable: true, PerSecond: 1000, Queue: 64})
	g.p.Start(nil)
	var want [][]byte
	for i := range 20 {
		b := []byte{0x00, 0xff, '\r', '\n', byte(i), 0x10, 0x11}
		want = append(want, b)
		o, err := g.p.Write(b, portio.WriteOptions{Source: "test"}).Result(t.Context())
		if err != nil || o.Bytes != len(b) {
			t.Fatalf("write %d: %+v %v", i, o, err)
		}
	}
	// A write that expects a reply gets the meter's answer.
	o, err := g.p.Write(meter.Request(1, 4, 0, 3), portio.WriteOptions{ExpectReply: true}).Result(t.Context())
	if err != nil || o.Reply == nil || len(o.Reply.Payload) != 3+6+2 || o.Reply.Payload[1] != 4 {
		t.Fatalf("request: %+v %v", o, err)
	}
	g.stop()
	got := m.Received()
	for i, w := range want {
		j := bytes.Index(got, w)
		if j < 0 {
			t.Fatalf("write %d (%x) not received byte-exact; device got %x", i, w, got)
		}
		got = got[j+len(w):]
	}
}
