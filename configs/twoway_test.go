package configs

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

const twoWay = `
ports:
  - name: meter
    path: /dev/ttyUSB0
    framing: idle:3.5c
    validate: crc16-modbus
    poll:
      - name: energy
        every: 1s
        send: "hex:010300000002C40B"
        reply_timeout: 200ms
        retries: 2
      - name: status
        every: 100ms
        send: 'READ\r\n'
    write:
      from: ["mqtt://127.0.0.1:1883/site/meter/write", "nats://127.0.0.1:4222/site.meter.write"]
      http: true
      token_env: WRITE_TOKEN
      max_bytes: 256
      per_second: 10
sinks:
  - name: db
    url: sqlite:x.db
`

func TestTwoWayParses(t *testing.T) {
	c, err := Parse("t.yaml", []byte(twoWay), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	p := c.Ports[0]
	if len(p.Poll) != 2 || p.Poll[0].Every != time.Second || p.Poll[0].ReplyTimeout != 200*time.Millisecond || p.Poll[0].Retries != 2 {
		t.Fatalf("poll = %+v", p.Poll)
	}
	b, err := ParseBytes(p.Poll[0].Send)
	if err != nil || !bytes.Equal(b, []byte{1, 3, 0, 0, 0, 2, 0xc4, 0x0b}) {
		t.Fatalf("send = %x, %v", b, err)
	}
	if b, _ := ParseBytes(p.Poll[1].Send); string(b) != "READ\r\n" {
		t.Fatalf("text send = %q", b)
	}
	w := p.Write
	if w == nil || !w.HTTP || w.TokenEnv != "WRITE_TOKEN" || len(w.From) != 2 || w.PerSecond != 10 {
		t.Fatalf("write = %+v", w)
	}
	src, err := ParseWriteSource(w.From[1])
	if err != nil || src.Scheme != "nats" || src.Topic != "site.meter.write" || src.Server != "nats://127.0.0.1:4222" {
		t.Fatalf("source = %+v, %v", src, err)
	}
}

func TestTwoWayErrors(t *testing.T) {
	tests := []struct {
		name, from, to string
		want           []string
	}{
		{"duration without unit", "every: 1s", "every: 5", []string{"t.yaml:9:", "ports[0].poll[0].every", "has no unit"}},
		{"every too small", "every: 1s", "every: 1ms", []string{"t.yaml:9:", "poll[0].every", "below 10ms"}},
		{"unknown poll key", "retries: 2", "retrys: 2", []string{"t.yaml:12:", `unknown key "retrys"`, `did you mean "retries"`}},
		{"bad hex", "hex:010300000002C40B", "hex:0103zz", []string{"t.yaml:10:", "poll[0].send", "pairs of hex digits"}},
		{"bad escape", `'READ\r\n'`, `'READ\q'`, []string{"t.yaml:15:", "poll[1].send", "bad escape"}},
		{"duplicate poll", "name: status", "name: energy", []string{"t.yaml:13:", `duplicate poll name "energy"`}},
		{"missing send", "        send: 'READ\\r\\n'\n", "", []string{"poll[1].send", "missing"}},
		{"too many retries", "retries: 2", "retries: 11", []string{"t.yaml:12:", "expected 0..10"}},
		{"bad source scheme", "mqtt://127.0.0.1:1883/site/meter/write", "http://x/y", []string{"t.yaml:17:", "write.from[0]", "unknown scheme"}},
		{"wildcard topic", "site/meter/write", "site/+/write", []string{"write.from[0]", "without wildcards"}},
		{"no port", "127.0.0.1:4222", "127.0.0.1", []string{"write.from[1]", "host and port"}},
		{"bad token env", "token_env: WRITE_TOKEN", "token_env: 'WRITE TOKEN'", []string{"t.yaml:19:", "write.token_env"}},
		{"too large", "max_bytes: 256", "max_bytes: 100000", []string{"t.yaml:20:", "write.max_bytes"}},
		{"unknown write key", "per_second: 10", "per_sec: 10", []string{"t.yaml:21:", `unknown key "per_sec"`}},
		{"no source", "      http: true\n", "", []string{"write.token_env", "only the HTTP endpoint"}},
		{"http without listener", "sinks:", "metrics_addr: \"\"\nsinks:", []string{"write.http", "metrics listener"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			y := strings.Replace(twoWay, tt.from, tt.to, 1)
			if y == twoWay {
				t.Fatal("replacement did not apply")
			}
			_, err := Parse("t.yaml", []byte(y), env(nil))
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}
