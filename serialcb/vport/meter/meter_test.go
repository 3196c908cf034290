//go:build linux

package meter

import (
	"bytes"
	"context"
	"encoding/hex"
	"io"
	"testing"

	"go.uber.org/goleak"

	"github.com/serialcbd/serialcbd/serialcb"
	"github.com/serialcbd/serialcbd/serialcb/vport"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestRequestMatchesModbusExample(t *testing.T) {
	if got := hex.EncodeToString(Request(1, 3, 0, 2)); got != "010300000002c40b" {
		t.Fatalf("request = %s", got)
	}
	r := Reply(1, 3, 0, 2, 7)
	if err := (serialcb.CRC16Modbus{}).Valid(r); err != nil {
		t.Fatalf("reply %x: %v", r, err)
	}
}

func TestMeterAnswersGarblesAndDrops(t *testing.T) {
	pair, err := vport.Open()
	if err != nil {
		t.Fatal(err)
	}
	slave, err := serialcb.Open(serialcb.PortConfig{Path: pair.Path(), Baud: 9600})
	if err != nil {
		t.Fatal(err)
	}
	defer slave.Close()
	m := &Meter{Fault: func(n uint64) Fault { return [...]Fault{OK, Garble, Drop, OK}[(n-1)%4] }}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- m.Serve(ctx, pair) }()

	read := func() []byte {
		b := make([]byte, 9) // 2 registers: 3 + 4 + 2
		if _, err := io.ReadFull(slave, b); err != nil {
			t.Fatal(err)
		}
		return b
	}
	req := Request(1, 3, 0, 2)
	slave.Write(req)
	if b := read(); (serialcb.CRC16Modbus{}).Valid(b) != nil || !bytes.Equal(b, Reply(1, 3, 0, 2, 1)) {
		t.Fatalf("reply 1 = %x", b)
	}
	slave.Write(req)
	if b := read(); (serialcb.CRC16Modbus{}).Valid(b) == nil {
		t.Fatalf("garbled reply passes the CRC: %x", b)
	}
	slave.Write(req) // dropped
	slave.Write(req)
	if b := read(); !bytes.Equal(b, Reply(1, 3, 0, 2, 4)) {
		t.Fatalf("reply 4 = %x", b)
	}
	slave.Write(append([]byte("raw"), req...)) // bytes written, then a request
	if b := read(); !bytes.Equal(b, Reply(1, 3, 0, 2, 5)) {
		t.Fatalf("reply 5 = %x", b)
	}
	cancel()
	pair.Close()
	<-done
	if got := m.Received(); !bytes.Contains(got, []byte("raw")) || m.Requests() != 5 || m.Replies() != 4 {
		t.Fatalf("received %x, %d requests, %d replies", got, m.Requests(), m.Replies())
	}
}
