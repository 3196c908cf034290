package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/serialcbd/serialcbd/configs"
	"github.com/serialcbd/serialcbd/serialcb/vport"
)

// needServer skips (or fails under CI=true) when nothing answers at addr.
func needServer(t *testing.T, what, addr, start string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err == nil {
		_ = conn.Close()
		return
	}
	msg := fmt.Sprintf("%s not reachable at %s (%v); start it with: %s", what, addr, err, start)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// The scale-out promise end to end: 10,000 frames written into a virtual
// port reach PostgreSQL, an MQTT subscriber at QoS 1 and a JetStream
// stream, each exactly once by id (MQTT may repeat one; the set of ids
// must still be the set sent), through the daemon with its spools.
func TestIntegrationScaleOut(t *testing.T) {
	needServer(t, "PostgreSQL", "127.0.0.1:5432", "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start")
	needServer(t, "Mosquitto", "127.0.0.1:1883", "mosquitto -d -c /etc/mosquitto/mosquitto.conf")
	needServer(t, "NATS", "127.0.0.1:4222", "start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log")
	const n = 10_000
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	tag := fmt.Sprintf("scaleout%d", rand.Uint32())
	pgURL := "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

	// The MQTT subscriber is there before the first frame (QoS 1, no retain).
	// Its lost connections are recorded for the report of a stall: with a
	// clean session it would come back without its subscription.
	var mu sync.Mutex
	mqttIDs := map[string]int{}
	var subLost []string
	sub := mqtt.NewClient(mqtt.NewClientOptions().AddBroker("tcp://127.0.0.1:1883").SetClientID(tag + "-sub").
		SetConnectionLostHandler(func(_ mqtt.Client, err error) {
			mu.Lock()
			subLost = append(subLost, fmt.Sprintf("%s: %v", time.Now().Format("15:04:05.000"), err))
			mu.Unlock()
		}))
	if tok := sub.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("mqtt subscriber: %v", tok.Error())
	}
	defer sub.Disconnect(100)
	onMsg := func(_ mqtt.Client, m mqtt.Message) {
		var rec struct{ ID string }
		if json.Unmarshal(m.Payload(), &rec) == nil {
			mu.Lock()
			mqttIDs[rec.ID]++
			mu.Unlock()
		}
	}
	if tok := sub.Subscribe(tag+"/#", 1, onMsg); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("mqtt subscribe: %v", tok.Error())
	}

	pair, err := vport.Open()
	if err != nil {
		t.Skipf("no virtual ports here: %v", err)
	}
	t.Cleanup(func() { _ = pair.Close() })
	file := filepath.Join(t.TempDir(), "scaleout.yaml")
	writeConfig(t, file, fmt.Sprintf(`ports:
  - name: dev
    path: %s
    baud: 115200
sinks:
  - name: pg
    url: %s
    postgres: {table: %s}
  - name: mqtt
    url: mqtt://127.0.0.1:1883/%s/{port}
  - name: nats
    url: nats://127.0.0.1:4222/%s.{port}
    nats: {stream: %s}
`, pair.Path(), pgURL, tag, tag, tag, strings.ToUpper(tag)))
	cfg, err := configs.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	r := runDaemon(t, cfg)

	// In waves the subscriber keeps up with: past its max_queued_messages
	// (1,000 by default) Mosquitto drops messages queued for a slow
	// subscriber after acknowledging them to the publisher.
	const wave = 500
	for from := 0; from < n; from += wave {
		var buf bytes.Buffer
		for i := from; i < from+wave; i++ {
			fmt.Fprintf(&buf, "reading %05d t=21.%d\n", i, i%10)
		}
		if _, err := pair.Write(buf.Bytes()); err != nil {
			t.Fatal(err)
		}
		for {
			mu.Lock()
			got := len(mqttIDs)
			mu.Unlock()
			if got >= from+wave {
				break
			}
			select {
			case <-ctx.Done():
				t.Fatalf("MQTT subscriber has %d of the first %d frames; %s", got, from+wave, scaleOutState(pgURL, tag, r, &mu, mqttIDs, &subLost, from+wave))
			case <-time.After(5 * time.Millisecond):
			}
		}
	}

	pg, err := pgx.Connect(ctx, pgURL)
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close(context.Background())
	defer pg.Exec(context.Background(), "DROP TABLE IF EXISTS "+tag)
	nc, err := nats.Connect("nats://127.0.0.1:4222")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	defer js.DeleteStream(context.Background(), strings.ToUpper(tag))

	var rows, distinct int
	var streamMsgs uint64
	for {
		_ = pg.QueryRow(ctx, "SELECT count(*), count(DISTINCT id) FROM "+tag).Scan(&rows, &distinct)
		if st, err := js.Stream(ctx, strings.ToUpper(tag)); err == nil {
			if info, err := st.Info(ctx); err == nil {
				streamMsgs = info.State.Msgs
			}
		}
		mu.Lock()
		got := len(mqttIDs)
		mu.Unlock()
		if rows >= n && streamMsgs >= n && got >= n {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("after 2 min: PostgreSQL %d rows, JetStream %d messages, MQTT %d ids; want %d each", rows, streamMsgs, got, n)
		case <-time.After(50 * time.Millisecond):
		}
	}
	r.stop()

	if rows != n || distinct != n {
		t.Errorf("PostgreSQL: %d rows, %d distinct ids; want %d", rows, distinct, n)
	}
	if streamMsgs != n {
		t.Errorf("JetStream: %d messages, want %d (Nats-Msg-Id dedupes retries)", streamMsgs, n)
	}
	// The same ids everywhere: each PostgreSQL id was published to MQTT.
	ids, err := pg.Query(ctx, "SELECT id::text FROM "+tag)
	if err != nil {
		t.Fatal(err)
	}
	defer ids.Close()
	mu.Lock()
	defer mu.Unlock()
	dupes := 0
	for ids.Next() {
		var id string
		if err := ids.Scan(&id); err != nil {
			t.Fatal(err)
		}
		switch c := mqttIDs[id]; {
		case c == 0:
			t.Fatalf("id %s in PostgreSQL never reached the MQTT subscriber", id)
		case c > 1:
			dupes++
		}
	}
	if len(mqttIDs) != n {
		t.Errorf("MQTT: %d distinct ids, want %d", len(mqttIDs), n)
	}
	t.Logf("MQTT QoS 1 repeats: %d", dupes)
}

// scaleOutState says where the frames of a stalled TestIntegrationScaleOut
// are: the other sinks' counts, the first ids the subscriber lacks, its
// lost connections and the daemon's warnings.
func scaleOutState(pgURL, tag string, r *running, mu *sync.Mutex, mqttIDs map[string]int, subLost *[]string, sent int) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var b strings.Builder
	if pg, err := pgx.Connect(ctx, pgURL); err == nil {
		var rows int
		err = pg.QueryRow(ctx, "SELECT count(*) FROM "+tag).Scan(&rows)
		fmt.Fprintf(&b, "PostgreSQL %d rows (%v); ", rows, err)
		if ids, err := pg.Query(ctx, "SELECT id::text FROM "+tag+" ORDER BY seq"); err == nil {
			mu.Lock()
			var missing []string
			for ids.Next() {
				var id string
				if ids.Scan(&id) == nil && mqttIDs[id] == 0 && len(missing) < 5 {
					missing = append(missing, id)
				}
			}
			mu.Unlock()
			ids.Close()
			fmt.Fprintf(&b, "first ids stored but not received over MQTT %v; ", missing)
		}
		_ = pg.Close(ctx)
	}
	mu.Lock()
	fmt.Fprintf(&b, "subscriber connections lost %v; ", *subLost)
	mu.Unlock()
	fmt.Fprintf(&b, "%d frames written; daemon warnings:", sent)
	for _, e := range r.logs.FilterLevelExact(zap.WarnLevel).All() {
		fmt.Fprintf(&b, "\n  %s %s %v", e.Time.Format("15:04:05.000"), e.Message, e.ContextMap())
	}
	for _, e := range r.logs.FilterLevelExact(zap.ErrorLevel).All() {
		fmt.Fprintf(&b, "\n  %s %s %v", e.Time.Format("15:04:05.000"), e.Message, e.ContextMap())
	}
	return b.String()
}
