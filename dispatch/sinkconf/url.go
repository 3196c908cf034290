package sinkconf

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// redacted replaces a secret in the messages Redact makes.
const redacted = "xxxxx"

// secretParams are substrings of query parameter names whose values Redact
// hides (compared in lower case): password, sslpassword, token,
// access_token, api_key, apikey, secret, client_secret, auth, sig,
// signature, credentials, session_id, …
var secretParams = []string{"pass", "pwd", "secret", "token", "key", "auth", "sig", "cred", "session", "cookie", "jwt", "bearer"}

// Redact returns a sink spec as errors and logs may show it: the password
// of a URL's user info replaced by xxxxx (user info without a password,
// which may be a token, replaced whole), and so are the values of query
// parameters whose names suggest a secret (password, token, api_key, …).
// It works on text that does not parse as a URL too, since such a spec is
// exactly the one an error message quotes.
func Redact(spec string) string {
	rest, fragment, hasFragment := strings.Cut(spec, "#")
	rest, query, hasQuery := strings.Cut(rest, "?")
	var b strings.Builder
	b.Grow(len(spec))
	if scheme, tail, ok := strings.Cut(rest, "://"); ok {
		authority, path := tail, ""
		if i := strings.IndexByte(tail, '/'); i >= 0 {
			authority, path = tail[:i], tail[i:]
		}
		if !strings.Contains(authority, "@") && strings.Contains(path, "@") && !hostPort(authority) {
			// A password with an unescaped '/': "u:pa/ss@host".
			at := strings.LastIndexByte(tail, '@')
			authority, path = tail[:at], ""
			if i := strings.IndexByte(tail[at:], '/'); i >= 0 {
				authority, path = tail[:at+i], tail[at+i:]
			} else {
				authority = tail
			}
		}
		b.WriteString(scheme)
		b.WriteString("://")
		if at := strings.LastIndexByte(authority, '@'); at >= 0 {
			if user, _, ok := strings.Cut(authority[:at], ":"); ok {
				b.WriteString(user)
				b.WriteString(":")
			}
			b.WriteString(redacted)
			authority = authority[at:]
		}
		b.WriteString(authority)
		b.WriteString(path)
	} else {
		b.WriteString(rest)
	}
	if hasQuery {
		b.WriteByte('?')
		for i, pair := range strings.Split(query, "&") {
			if i > 0 {
				b.WriteByte('&')
			}
			k, _, hasValue := strings.Cut(pair, "=")
			if hasValue && secretParam(k) {
				b.WriteString(k)
				b.WriteString("=" + redacted)
				continue
			}
			b.WriteString(pair)
		}
	}
	if hasFragment {
		b.WriteByte('#')
		b.WriteString(fragment)
	}
	return b.String()
}

// hostPort reports whether an authority without '@' reads as HOST[:PORT]
// (rather than as the start of "user:password" cut at a '/').
func hostPort(authority string) bool {
	if strings.HasPrefix(authority, "[") {
		return true
	}
	_, port, ok := strings.Cut(authority, ":")
	if !ok {
		return true
	}
	for i := 0; i < len(port); i++ {
		if port[i] < '0' || port[i] > '9' {
			return false
		}
	}
	return true
}

func secretParam(name string) bool {
	if n, err := url.QueryUnescape(name); err == nil {
		name = n
	}
	name = strings.ToLower(name)
	for _, s := range secretParams {
		if strings.Contains(name, s) {
			return true
		}
	}
	return false
}

// ParseURL parses a sink URL. Its error quotes the URL redacted (url.Parse's
// own error quotes it whole, password included) and says what is wrong.
func ParseURL(spec string) (*url.URL, error) {
	u, err := url.Parse(spec)
	if err == nil {
		return u, nil
	}
	cause := err
	if ue, ok := errors.AsType[*url.Error](err); ok {
		cause = ue.Err
	}
	if _, ok := errors.AsType[url.EscapeError](cause); ok {
		// Its text repeats the escape, which may be part of a password.
		cause = errors.New(`invalid %-escape (write a literal % as %25)`)
	}
	return nil, fmt.Errorf("url %s: %w", Redact(spec), cause)
}

// CheckHost checks a host name or IP address (IPv6 without brackets, an
// optional %zone) as a URL's Hostname returns it: "" is missing, and a
// name must be a DNS name (letters, digits, '-', '_'; labels of at most 63
// bytes not starting or ending with '-'; at most 253 bytes; not all
// digits). Non-ASCII letters are allowed for internationalised names.
func CheckHost(host string) error {
	if host == "" {
		return errors.New("missing host")
	}
	ip, _, _ := strings.Cut(host, "%")
	if net.ParseIP(ip) != nil {
		return nil
	}
	if !isDomainName(host) {
		return fmt.Errorf("host %q: not a valid host name or IP address", host)
	}
	return nil
}

// isDomainName follows the net package's check of a name to resolve, but
// lets bytes past ASCII through (an IDN the HTTP client converts).
func isDomainName(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	nonNumeric := false
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			switch c := label[i]; {
			case '0' <= c && c <= '9':
			case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', c == '-', c == '_', c >= 0x80:
				nonNumeric = true
			default:
				return false
			}
		}
	}
	return nonNumeric
}

// CheckPort checks a URL's port: "" (the scheme's default) or a number
// between 1 and 65535.
func CheckPort(port string) error {
	if port == "" {
		return nil
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("port %q: must be a number between 1 and 65535", port)
	}
	return nil
}

// CheckHostPort checks a parsed URL's host and port.
func CheckHostPort(u *url.URL) error {
	if err := CheckHost(u.Hostname()); err != nil {
		return err
	}
	return CheckPort(u.Port())
}
