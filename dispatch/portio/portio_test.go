package portio_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"

	"github.com/serialcbd/serialcbd/asyncloop"
	"github.com/serialcbd/serialcbd/dispatch/portio"
	"github.com/serialcbd/serialcbd/serialcb"
	"github.com/serialcbd/serialcbd/serialcb/vport/meter"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeDev stands in for a Reader and its device inside a synctest bubble:
// a write "goes out" at once, and a Modbus request is answered by the
// meter's reply after delay, handed to the Port as the frame callback
// would (validated with CRC-16/MODBUS).
type fakeDev struct {
	p     *portio.Port
	delay time.Duration
	fault func(n uint64) meter.Fault

	mu      sync.Mutex
	down    bool
	n       uint64
	writes  [][]byte
	writeAt []time.Time
	frames  []*serialcb.Frame // every frame handed on, with its fields
	wg      sync.WaitGroup
}

func (d *fakeDev) Write(req *serialcb.WriteRequest) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.down {
		return serialcb.ErrPortDown
	}
	if !req.Deadline.IsZero() && !time.Now().Before(req.Deadline) {
		d.wg.Go(func() { req.Done(0, serialcb.ErrWriteExpired) })
		return nil
	}
	if req.BeforeWrite != nil {
		req.BeforeWrite()
	}
	d.writes = append(d.writes, bytes.Clone(req.Data))
	d.writeAt = append(d.writeAt, time.Now())
	req.Done(len(req.Data), nil)
	if len(req.Data) != 8 || req.Data[1] != 3 {
		return nil
	}
	d.n++
	fault := meter.OK
	if d.fault != nil {
		fault = d.fault(d.n)
	}
	if fault == meter.Drop {
		return nil
	}
	reply := meter.Reply(1, 3, 0, 2, uint16(d.n))
	delay := d.delay
	switch fault {
	case meter.Garble:
		reply[3] ^= 0xff
	case meter.Late:
		delay += time.Hour
	}
	d.wg.Go(func() {
		time.Sleep(delay)
		d.frame(reply)
	})
	return nil
}

// frame hands a frame to the Port as the read loop's callback would.
func (d *fakeDev) frame(payload []byte) {
	f := &serialcb.Frame{ReceivedAt: time.Now(), Payload: payload}
	d.mu.Lock()
	p := d.p
	d.mu.Unlock()
	p.OnFrame(f, serialcb.CRC16Modbus{}.Valid(payload))
	d.mu.Lock()
	d.frames = append(d.frames, f)
	d.mu.Unlock()
}

type outcomes struct {
	mu   sync.Mutex
	ok   []portio.Outcome
	errs []error
}

func (o *outcomes) add(out portio.Outcome, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if err != nil {
		o.errs = append(o.errs, err)
		return
	}
	o.ok = append(o.ok, out)
}

// rig builds a loop, a fake device and a Port inside a bubble; stop stops
// everything and waits.
func rig(t *testing.T, dev *fakeDev, cfg portio.Config) (*portio.Port, *outcomes, func()) {
	t.Helper()
	loop := asyncloop.New(asyncloop.Options{})
	loop.Start()
	out := &outcomes{}
	if cfg.Port == "" {
		cfg.Port = "meter"
	}
	if cfg.OnPoll == nil {
		cfg.OnPoll = out.add
	}
	p, err := portio.New(loop, dev, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	dev.p = p
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		p.Stop()
		<-p.Idle()
		p.Wait()
		if err := loop.Shutdown(context.Background()); err != nil {
			t.Error(err)
		}
		dev.wg.Wait()
	}
	t.Cleanup(stop)
	return p, out, stop
}

var energy = portio.Poll{Name: "energy", Every: 100 * time.Millisecond, Send: meter.Request(1, 3, 0, 2), ReplyTimeout: 50 * time.Millisecond}

func TestScheduleDoesNotDrift(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dev := &fakeDev{delay: 10 * time.Millisecond}
		p, out, stop := rig(t, dev, portio.Config{Polls: []portio.Poll{energy}})
		t0 := time.Now()
		p.Start(nil)
		time.Sleep(10*time.Second + 50*time.Millisecond)
		stop()
		if len(out.ok) != 101 || len(out.errs) != 0 {
			t.Fatalf("%d replies, %d failures; want 101, 0", len(out.ok), len(out.errs))
		}
		for k, at := range dev.writeAt {
			if want := t0.Add(time.Duration(k) * 100 * time.Millisecond); !at.Equal(want) {
				t.Fatalf("request %d written at +%v, want +%v", k, at.Sub(t0), want.Sub(t0))
			}
		}
		for i, o := range out.ok {
			if o.RTTMicros != 10000 || o.Poll != "energy" || !o.OK || o.Reply == nil || o.Attempts != 1 {
				t.Fatalf("outcome %d = %+v", i, o)
			}
		}
		// The reply frame carries poll, request_id and rtt_us.
		var fields struct {
			Poll      string `json:"poll"`
			RequestID string `json:"request_id"`
			RTT       int64  `json:"rtt_us"`
		}
		if err := json.Unmarshal(dev.frames[5].Fields, &fields); err != nil {
			t.Fatalf("fields %s: %v", dev.frames[5].Fields, err)
		}
		if fields.Poll != "energy" || fields.RequestID != out.ok[5].RequestID.String() || fields.RTT != 10000 {
			t.Fatalf("fields %s, outcome id %s", dev.frames[5].Fields, out.ok[5].RequestID)
		}
		if s := p.Stats().Polls[0]; s.Sent != 101 || s.Replies != 101 || s.Skipped != 0 {
			t.Fatalf("stats %+v", s)
		}
	})
}

// A device slower than the period: ticks whose request is still out are
// skipped and counted, never queued up.
func TestSlowDeviceSkipsTicks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dev := &fakeDev{delay: 250 * time.Millisecond}
		poll := energy
		poll.ReplyTimeout = time.Second
		p, out, stop := rig(t, dev, portio.Config{Polls: []portio.Poll{poll}})
		p.Start(nil)
		time.Sleep(time.Second + 50*time.Millisecond) // ticks at 0, 100, …, 1000 ms
		s := p.Stats().Polls[0]
		// Sent at 0, 300, 600, 900; answered at 250, 550, 850.
		if s.Sent != 4 || s.Replies != 3 || s.Skipped != 7 {
			t.Fatalf("stats %+v; want 4 sent, 3 replies, 7 skipped", s)
		}
		stop()
		if len(out.ok) != 4 { // the last one answered during the stop
			t.Fatalf("%d replies, %v", len(out.ok), out.errs)
		}
	})
}

func TestTimeoutsAndRetries(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// Requests 1, 2 dropped, 3 answered; 4 garbled, 5 late, 6 dropped.
		faults := []meter.Fault{meter.Drop, meter.Drop, meter.OK, meter.Garble, meter.Late, meter.Drop}
		dev := &fakeDev{delay: 5 * time.Millisecond, fault: func(n uint64) meter.Fault {
			if int(n) <= len(faults) {
				return faults[n-1]
			}
			return meter.OK
		}}
		poll := energy
		poll.Every = time.Second
		poll.Retries = 2
		p, out, stop := rig(t, dev, portio.Config{Polls: []portio.Poll{poll}})
		p.Start(nil)
		time.Sleep(1500 * time.Millisecond) // two polls
		stop()
		if len(out.ok) != 1 || out.ok[0].Attempts != 3 {
			t.Fatalf("first poll: %+v", out.ok)
		}
		if len(out.errs) != 1 || !errors.Is(out.errs[0], portio.ErrReplyTimeout) || !strings.Contains(out.errs[0].Error(), "after 3 attempts") {
			t.Fatalf("second poll: %v", out.errs)
		}
		s := p.Stats().Polls[0]
		if s.Sent != 6 || s.Timeouts != 4 || s.Invalid != 1 || s.Failed != 1 || s.Replies != 1 {
			t.Fatalf("stats %+v", s)
		}
	})
}

// Frames that are not the reply (a reply_prefix mismatch) flow on as
// unsolicited while the reply is awaited; frames with no request out are
// never claimed.
func TestUnsolicitedFramesInterleave(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dev := &fakeDev{delay: 20 * time.Millisecond}
		poll := energy
		poll.Every = time.Second
		poll.ReplyPrefix = []byte{1, 3}
		p, out, stop := rig(t, dev, portio.Config{Polls: []portio.Poll{poll}})
		p.Start(nil)
		time.Sleep(10 * time.Millisecond)
		dev.frame([]byte("ALARM door open")) // while the reply is awaited
		time.Sleep(500 * time.Millisecond)
		dev.frame([]byte("ALARM door closed")) // nothing awaited
		stop()
		if len(out.ok) != 1 || len(out.errs) != 0 {
			t.Fatalf("outcomes %+v %v", out.ok, out.errs)
		}
		for _, f := range dev.frames {
			claimed := f.Fields != nil
			if claimed != (f.Payload[0] == 1) {
				t.Fatalf("frame %q fields %s", f.Payload, f.Fields)
			}
		}
		if got := p.Stats().Unsolicited; got != 1 {
			t.Fatalf("unsolicited = %d", got)
		}
	})
}

func TestWriteLimits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dev := &fakeDev{delay: 5 * time.Millisecond}
		p, _, stop := rig(t, dev, portio.Config{Writable: true, MaxBytes: 8, PerSecond: 2, Queue: 4})
		p.Start(nil)
		res := func(f *asyncloop.Future[portio.Outcome]) (portio.Outcome, error) {
			return f.Result(t.Context())
		}
		o, err := res(p.Write([]byte("ON\r\n"), portio.WriteOptions{Source: "test"}))
		if err != nil || !o.OK || o.Bytes != 4 || o.Source != "test" {
			t.Fatalf("write: %+v %v", o, err)
		}
		if _, err := res(p.Write(make([]byte, 9), portio.WriteOptions{})); !errors.Is(err, portio.ErrTooLarge) {
			t.Fatalf("9 bytes: %v", err)
		}
		if _, err := res(p.Write(nil, portio.WriteOptions{})); !errors.Is(err, portio.ErrEmpty) {
			t.Fatalf("empty: %v", err)
		}
		if _, err := res(p.Write([]byte("a"), portio.WriteOptions{})); err != nil {
			t.Fatalf("second write: %v", err)
		}
		if o, err := res(p.Write([]byte("b"), portio.WriteOptions{})); !errors.Is(err, portio.ErrRateLimited) || o.OK || o.Error == "" {
			t.Fatalf("third write in a second: %+v %v", o, err)
		}
		time.Sleep(500 * time.Millisecond) // one token back
		if _, err := res(p.Write([]byte("c"), portio.WriteOptions{})); err != nil {
			t.Fatalf("after a pause: %v", err)
		}
		// A request: the outcome carries the reply.
		time.Sleep(time.Second)
		o, err = res(p.Write(meter.Request(1, 3, 0, 2), portio.WriteOptions{ExpectReply: true}))
		if err != nil || o.Reply == nil || !bytes.Equal(o.Reply.Payload, meter.Reply(1, 3, 0, 2, 1)) || o.RTTMicros != 5000 {
			t.Fatalf("request: %+v %v", o, err)
		}
		j, _ := json.Marshal(o)
		if !bytes.Contains(j, []byte(`"fields":{"request_id":"`+o.RequestID.String())) || !bytes.Contains(j, []byte(`"rtt_us":5000`)) {
			t.Fatalf("outcome JSON %s", j)
		}
		dev.mu.Lock()
		dev.down = true
		dev.mu.Unlock()
		if _, err := res(p.Write([]byte("d"), portio.WriteOptions{})); !errors.Is(err, serialcb.ErrPortDown) {
			t.Fatalf("port down: %v", err)
		}
		stop()
		if _, err := res(p.Write([]byte("e"), portio.WriteOptions{})); err == nil {
			t.Fatal("write after stop succeeded")
		}
		if got := [][]byte{[]byte("ON\r\n"), []byte("a"), []byte("c")}; !equalWrites(dev.writes[:3], got) {
			t.Fatalf("device got %q", dev.writes)
		}
	})
}

func equalWrites(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

func TestNotWritable(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p, _, _ := rig(t, &fakeDev{}, portio.Config{})
		p.Start(nil)
		if _, err := p.Write([]byte("x"), portio.WriteOptions{}).Result(t.Context()); !errors.Is(err, portio.ErrNotWritable) {
			t.Fatalf("err = %v", err)
		}
	})
}

// Writes queue behind the outstanding poll and go in order; a full queue
// is an error to the writer at once.
func TestWritesWaitForOutstandingPoll(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dev := &fakeDev{delay: 300 * time.Millisecond}
		poll := energy
		poll.Every = 10 * time.Second
		poll.ReplyTimeout = time.Second
		p, out, stop := rig(t, dev, portio.Config{Polls: []portio.Poll{poll}, Writable: true, Queue: 2, PerSecond: 100})
		p.Start(nil)
		time.Sleep(10 * time.Millisecond)
		f1 := p.Write([]byte("w1"), portio.WriteOptions{})
		f2 := p.Write([]byte("w2"), portio.WriteOptions{})
		f3 := p.Write([]byte("w3"), portio.WriteOptions{})
		if _, err := f3.Result(t.Context()); !errors.Is(err, portio.ErrQueueFull) {
			t.Fatalf("third write: %v", err)
		}
		for _, f := range []*asyncloop.Future[portio.Outcome]{f1, f2} {
			if _, err := f.Result(t.Context()); err != nil {
				t.Fatal(err)
			}
		}
		if !dev.writeAt[1].Equal(dev.writeAt[0].Add(300 * time.Millisecond)) {
			t.Fatalf("write went out %v after the poll, before its reply", dev.writeAt[1].Sub(dev.writeAt[0]))
		}
		if !equalWrites(dev.writes[1:], [][]byte{[]byte("w1"), []byte("w2")}) {
			t.Fatalf("order %q", dev.writes)
		}
		stop()
		if len(out.ok) != 1 {
			t.Fatalf("poll outcomes %+v %v", out.ok, out.errs)
		}
	})
}

// A reload mid-poll: the old Port's outstanding request gets its reply,
// and the new Port sends nothing before that.
func TestReplaceMidPoll(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dev := &fakeDev{delay: 300 * time.Millisecond}
		poll := energy
		poll.Every = time.Second
		poll.ReplyTimeout = time.Second
		old, outOld, stopOld := rig(t, dev, portio.Config{Polls: []portio.Poll{poll}, Writable: true})
		old.Start(nil)
		time.Sleep(100 * time.Millisecond)
		queued := old.Write([]byte("late"), portio.WriteOptions{})
		t1 := time.Now()
		old.Stop()
		dev2 := dev
		loop := asyncloop.New(asyncloop.Options{})
		loop.Start()
		outNew := &outcomes{}
		nw, err := portio.New(loop, dev2, portio.Config{Port: "meter", Polls: []portio.Poll{poll}, OnPoll: outNew.add}, nil)
		if err != nil {
			t.Fatal(err)
		}
		nw.Start(old.Idle())
		if _, err := queued.Result(t.Context()); !errors.Is(err, portio.ErrStopped) {
			t.Fatalf("write queued at stop: %v", err)
		}
		<-old.Idle()
		dev.mu.Lock()
		dev.p = nw // the frame callback now feeds the new Port
		dev.mu.Unlock()
		time.Sleep(400 * time.Millisecond)
		nw.Stop()
		<-nw.Idle()
		nw.Wait()
		loop.Shutdown(context.Background())
		stopOld()
		if len(outOld.ok) != 1 || len(outNew.ok) != 1 || len(outNew.errs) != 0 {
			t.Fatalf("old %+v %v, new %+v %v", outOld.ok, outOld.errs, outNew.ok, outNew.errs)
		}
		if !dev.writeAt[1].Equal(t1.Add(200 * time.Millisecond)) {
			t.Fatalf("new Port wrote %v after the stop; want when the old reply came", dev.writeAt[1].Sub(t1))
		}
	})
}

// A frame while no reply is awaited costs the read loop a lock and no
// allocation.
func TestOnFrameUnsolicitedAllocatesNothing(t *testing.T) {
	loop := asyncloop.New(asyncloop.Options{})
	p, err := portio.New(loop, &fakeDev{}, portio.Config{Port: "x", Polls: []portio.Poll{energy}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	f := &serialcb.Frame{ReceivedAt: time.Now(), Payload: []byte("unsolicited")}
	if n := testing.AllocsPerRun(1000, func() { p.OnFrame(f, nil) }); n != 0 {
		t.Fatalf("%v allocations per frame", n)
	}
}
