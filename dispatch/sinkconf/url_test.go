package sinkconf

import (
	"net/url"
	"strings"
	"testing"
)

func TestRedact(t *testing.T) {
	tests := []struct{ in, want string }{
		{"htp://u:SECRET@host/x", "htp://u:xxxxx@host/x"},
		{"http://TOKEN@host/x", "http://xxxxx@host/x"},
		{"http://u:p@ss:w@rd@host:8080/x?q=1", "http://u:xxxxx@host:8080/x?q=1"},
		{"http://u:pa/ss@host/x", "http://u:xxxxx@host/x"},
		{"http://u:p%zz@h/x", "http://u:xxxxx@h/x"},
		{"http://host/x?api_key=SECRET&page=2", "http://host/x?api_key=xxxxx&page=2"},
		{"postgres://me:SECRET@db/frames?sslmode=verify-full&password=SECRET&sslpassword=SECRET",
			"postgres://me:xxxxx@db/frames?sslmode=verify-full&password=xxxxx&sslpassword=xxxxx"},
		{"https://h/x?Access%5FToken=SECRET#frag", "https://h/x?Access%5FToken=xxxxx#frag"},
		{"http://host:99999/users/@me", "http://host:99999/users/@me"},
		{"http://[::1]:80/x", "http://[::1]:80/x"},
		{"sqlite:./a.db", "sqlite:./a.db"},
		{"stdout", "stdout"},
	}
	for _, tt := range tests {
		got := Redact(tt.in)
		if got != tt.want {
			t.Errorf("Redact(%q) = %q, want %q", tt.in, got, tt.want)
		}
		if strings.Contains(got, "SECRET") || strings.Contains(got, "TOKEN") {
			t.Errorf("Redact(%q) = %q shows the secret", tt.in, got)
		}
	}
}

func TestParseURL(t *testing.T) {
	for _, spec := range []string{"http://u:SECRET@[::1/x", "http://u:SECRET%zz@h/x", "http://u:SECRET@ho st/x", "http://u:SECRET@h:7x/x"} {
		_, err := ParseURL(spec)
		if err == nil {
			t.Errorf("ParseURL(%q) = nil error", spec)
			continue
		}
		if msg := err.Error(); strings.Contains(msg, "SECRET") || !strings.Contains(msg, "xxxxx") {
			t.Errorf("ParseURL(%q) error %q: want the URL redacted", spec, msg)
		}
	}
	if u, err := ParseURL("http://u:p@h:80/x"); err != nil || u.Port() != "80" {
		t.Errorf("ParseURL(valid) = %v, %v", u, err)
	}
}

func TestCheckHostPort(t *testing.T) {
	tests := []struct {
		url  string
		want string // "" is valid
	}{
		{"http://host/x", ""},
		{"http://host:8080/x", ""},
		{"http://host.example.com.:443/x", ""},
		{"http://my_host-1/x", ""},
		{"http://10.0.0.1:1/x", ""},
		{"http://[::1]:65535/x", ""},
		{"http://[fe80::1%25eth0]/x", ""},
		{"http://bücher.de/x", ""},
		{"http://host:99999/x", `port "99999": must be a number between 1 and 65535`},
		{"http://host:0/x", `port "0"`},
		{"http://:80/x", "missing host"},
		{"http://-bad-/x", `host "-bad-": not a valid host name or IP address`},
		{"http://a..b/x", `host "a..b"`},
		{"http://999.1.1.1/x", `host "999.1.1.1"`},
		{"http://" + strings.Repeat("a", 64) + ".com/x", "not a valid host name"},
	}
	for _, tt := range tests {
		u, err := url.Parse(tt.url)
		if err != nil {
			t.Fatalf("url.Parse(%q): %v", tt.url, err)
		}
		err = CheckHostPort(u)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("CheckHostPort(%q) = %v, want nil", tt.url, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("CheckHostPort(%q) = %v, want %q", tt.url, err, tt.want)
		}
	}
}
