package configs

import (
	"strings"
	"testing"
)

func TestMetricsAddr(t *testing.T) {
	tests := []struct {
		addr string
		want string // "" is valid
	}{
		{`""`, ""},
		{"127.0.0.1:9465", ""},
		{"':9464'", ""},
		{"'[::1]:9464'", ""},
		{"localhost:0", ""},
		{"metrics.example.com:9464", ""},
		{"127.0.0.1:99999", `t.yaml:8: metrics_addr: "127.0.0.1:99999": port "99999" is not a number from 0 to 65535`},
		{"localhost", `expected HOST:PORT`},
		{"-bad-:9464", `host "-bad-" is not an IP address or a host name`},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			_, err := Parse("t.yaml", []byte(base+"metrics_addr: "+tt.addr+"\n"), env(nil))
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Parse() = %v, want nil", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("Parse() = %v, want %q", err, tt.want)
			}
		})
	}
}
