package configs

import (
	"fmt"
	"net"
	"strconv"
)

// checkMetricsAddr checks metrics_addr: "" (no metrics server) or
// HOST:PORT with PORT from 0 to 65535 and HOST empty (every interface), an
// IP address or a host name.
func (c *Config) checkMetricsAddr() error {
	if c.MetricsAddr == nil || *c.MetricsAddr == "" {
		return nil
	}
	if err := CheckListenAddr(*c.MetricsAddr); err != nil {
		return c.Errorf("metrics_addr", "%v", err)
	}
	return nil
}

// CheckListenAddr checks an address to listen on: HOST:PORT with a numeric
// PORT from 0 to 65535 (0: any free port) and HOST empty (every
// interface), an IP address (IPv6 in brackets) or a host name.
func CheckListenAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q: expected HOST:PORT, e.g. 127.0.0.1:9464 or :9464", addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("%q: port %q is not a number from 0 to 65535", addr, port)
	}
	if host != "" && net.ParseIP(host) == nil && !hostName(host) {
		return fmt.Errorf("%q: host %q is not an IP address or a host name", addr, host)
	}
	return nil
}

// hostName reports whether s is a DNS name: letters, digits, '-' and '_',
// dot-separated labels of 1 to 63 bytes not starting or ending with '-'.
func hostName(s string) bool {
	if len(s) > 253 {
		return false
	}
	label := 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == '.' {
			if label == 0 || label > 63 || s[i-label] == '-' || s[i-1] == '-' {
				return false
			}
			label = 0
			continue
		}
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
		label++
	}
	return true
}
