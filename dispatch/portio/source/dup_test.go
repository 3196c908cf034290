package source

import (
	"testing"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"go.uber.org/zap"

	"github.com/serialcbd/serialcbd/asyncloop"
	"github.com/serialcbd/serialcbd/dispatch/portio"
)

type countTarget struct{ writes int }

func (c *countTarget) Write([]byte, portio.WriteOptions) *asyncloop.Future[portio.Outcome] {
	c.writes++
	return nil
}

// dupMessage is an MQTT message the broker redelivered.
type dupMessage struct{ mqtt.Message }

func (dupMessage) Duplicate() bool   { return true }
func (dupMessage) MessageID() uint16 { return 7 }
func (dupMessage) Payload() []byte   { return []byte("open valve") }

// A redelivered MQTT message is never written: its first delivery may
// have been (writes are at most once).
func TestMQTTRedeliveryNotWritten(t *testing.T) {
	tgt := &countTarget{}
	s := &Source{cfg: Config{Port: "p"}, target: tgt, log: zap.NewNop(), topic: "t",
		mc: mqtt.NewClient(mqtt.NewClientOptions().AddBroker("tcp://127.0.0.1:1"))}
	s.onMQTT(nil, dupMessage{})
	if tgt.writes != 0 || s.Stats().Duplicates != 1 || s.Stats().Received != 1 {
		t.Fatalf("writes %d, stats %+v", tgt.writes, s.Stats())
	}
}
