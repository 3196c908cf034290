package portio

import (
	"bytes"
	"fmt"
	"strconv"
	"time"

	"github.com/serialcbd/serialcbd/dispatch"
	"github.com/serialcbd/serialcbd/serialcb"
	"github.com/serialcbd/serialcbd/serialcb/jsontext"
)

// Outcome is what became of one request: a poll or a write.
type Outcome struct {
	// RequestID identifies the request; a reply record carries it too.
	RequestID serialcb.ID `json:"request_id"`
	Port      string      `json:"port"`
	// Poll names the poll; "" for a write.
	Poll string `json:"poll,omitempty"`
	// Source is where a write came from (http, mqtt, nats, cli); "poll"
	// for polls.
	Source string `json:"source"`
	OK     bool   `json:"ok"`
	Error  string `json:"error,omitempty"`
	// Bytes is how many bytes were written.
	Bytes int `json:"bytes"`
	// Attempts counts the times the request was sent.
	Attempts int `json:"attempts"`
	// RTTMicros is from the write to the reply's last byte, in µs.
	RTTMicros int64 `json:"rtt_us,omitempty"`
	// Reply is the reply frame, for polls and writes that expect one.
	Reply *Reply `json:"reply,omitempty"`
}

// Reply is the frame that answered a request. Its payload is text when it
// is valid UTF-8, else base64 with Encoding "base64", as in HTTP records.
type Reply struct {
	ID         serialcb.ID `json:"id"`
	Seq        uint64      `json:"seq"`
	ReceivedAt time.Time   `json:"received_at"`
	Payload    []byte      `json:"-"`
	// Fields are the decoded fields with poll, request_id and rtt_us.
	Fields []byte `json:"-"`
}

// MarshalJSON writes the payload as text or base64, and the fields as an
// object.
func (r *Reply) MarshalJSON() ([]byte, error) {
	b := []byte(`{"id":"`)
	b, _ = r.ID.AppendText(b)
	b = append(b, `","seq":`...)
	b = strconv.AppendUint(b, r.Seq, 10)
	b = append(b, `,"received_at":"`...)
	b = r.ReceivedAt.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `",`...)
	b = dispatch.AppendPayload(b, r.Payload, r.Fields)
	return append(b, '}'), nil
}

func (p *Port) outcome(t *tx, err error) Outcome {
	o := Outcome{RequestID: t.id, Port: p.cfg.Port, Source: t.source, OK: err == nil, Bytes: t.bytes, Attempts: t.attempts}
	if t.poll != nil {
		o.Poll = t.poll.cfg.Name
	}
	if err != nil {
		o.Error = err.Error()
	}
	return o
}

// OnFrame is called by the port's frame callback, on the read goroutine,
// for every frame; invalid is the frame's validation error (nil: valid).
// When the frame is the awaited reply it claims it: a valid reply gets
// the fields poll (for a poll), request_id and rtt_us added to f.Fields,
// and OnFrame returns true; an invalid one fails the attempt. The frame
// flows on either way. Unsolicited frames cost a lock and a compare.
func (p *Port) OnFrame(f *serialcb.Frame, invalid error) bool {
	p.mu.Lock()
	t := p.await
	if t == nil {
		p.mu.Unlock()
		return false
	}
	if f.ReceivedAt.Before(p.awaitSince) || len(t.prefix) > 0 && !bytes.HasPrefix(f.Payload, t.prefix) {
		p.mu.Unlock()
		p.unsolicited.Add(1)
		return false
	}
	att, rtt := p.awaitAtt, f.ReceivedAt.Sub(p.awaitSince)
	p.await = nil
	p.mu.Unlock()
	if invalid != nil {
		err := fmt.Errorf("%w: %w", ErrInvalidReply, invalid)
		p.loop.CallLater(0, func() { p.failAttempt(t, att, err) })
		return false
	}
	f.Fields = addFields(f.Fields, t, rtt)
	r := &Reply{ID: f.ID, Seq: f.Seq, ReceivedAt: f.ReceivedAt, Payload: f.Payload, Fields: f.Fields}
	p.loop.CallLater(0, func() { p.replied(t, att, r, rtt) })
	return true
}

// addFields returns fields (a JSON object or nil) with poll, request_id
// and rtt_us added.
func addFields(fields []byte, t *tx, rtt time.Duration) []byte {
	b := make([]byte, 0, len(fields)+96)
	b = append(b, '{')
	if t.poll != nil {
		b = append(b, `"poll":`...)
		b = jsontext.AppendString(b, []byte(t.poll.cfg.Name))
		b = append(b, ',')
	}
	b = append(b, `"request_id":"`...)
	b, _ = t.id.AppendText(b)
	b = append(b, `","rtt_us":`...)
	b = strconv.AppendInt(b, rtt.Microseconds(), 10)
	if inner := bytes.TrimSpace(fields); len(inner) > 2 && inner[0] == '{' {
		b = append(b, ',')
		b = append(b, inner[1:]...)
		return b
	}
	return append(b, '}')
}
