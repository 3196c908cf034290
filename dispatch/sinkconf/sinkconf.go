// Package sinkconf holds settings shared by sink packages: the error a
// sink's Config.Validate returns about one setting, and the tls block of
// the sinks that dial a server.
package sinkconf

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
)

// KeyError is a Validate error about one setting; Key is its name inside
// the sink's settings block (e.g. "format" or "tls.ca_file"), so that a
// config loader can point at the offending line.
type KeyError struct {
	Key string
	Err error
}

func (e *KeyError) Error() string { return e.Err.Error() }

// Unwrap returns the underlying error.
func (e *KeyError) Unwrap() error { return e.Err }

// ConfigKey returns the setting's name inside the sink's block.
func (e *KeyError) ConfigKey() string { return e.Key }

// KeyErrorf returns a *KeyError about key whose error is
// fmt.Errorf(format, args...).
func KeyErrorf(key, format string, args ...any) error {
	return &KeyError{Key: key, Err: fmt.Errorf(format, args...)}
}

// TLS is a sink's tls block (key "tls" in the sink's settings). Its errors
// name the settings "tls.ca_file", "tls.cert_file" and "tls.key_file", and
// have no sink prefix: the sink adds its own ("mqtt sink: %w").
type TLS struct {
	// CAFile is a PEM file of the CA certificates to trust instead of the
	// system's (a private CA).
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are a PEM client certificate and its key, for
	// servers that authenticate clients by certificate. Both or neither.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// InsecureSkipVerify accepts any server certificate. For tests only.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
	// ServerName is the name the server's certificate must carry; default
	// the host the sink connects to.
	ServerName string `yaml:"server_name"`
}

// IsSet reports whether any TLS setting is given.
func (t TLS) IsSet() bool {
	return t != TLS{}
}

// Validate checks the settings without I/O: cert_file and key_file come
// together. The error is a *KeyError naming the one that is set.
func (t TLS) Validate() error {
	switch {
	case t.CertFile != "" && t.KeyFile == "":
		return KeyErrorf("tls.cert_file", "tls: cert_file and key_file go together: set both or neither")
	case t.CertFile == "" && t.KeyFile != "":
		return KeyErrorf("tls.key_file", "tls: cert_file and key_file go together: set both or neither")
	}
	return nil
}

// Config reads the CA file and the client key pair, if set, and returns
// the client TLS configuration (TLS 1.2 at least). Its ServerName is
// t.ServerName, else serverName; "" leaves it to the caller's transport,
// which then uses the host it dials. Errors are *KeyError.
func (t TLS) Config(serverName string) (*tls.Config, error) {
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         serverName,
		InsecureSkipVerify: t.InsecureSkipVerify, //nolint:gosec // opt-in, documented as test-only
	}
	if t.ServerName != "" {
		cfg.ServerName = t.ServerName
	}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, KeyErrorf("tls.ca_file", "read tls ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, KeyErrorf("tls.ca_file", "tls ca_file %q: no PEM certificate found", t.CAFile)
		}
		cfg.RootCAs = pool
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, KeyErrorf("tls.cert_file", "tls cert_file/key_file: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// IsName reports whether s is a plain name: ASCII letters, digits and
// underscores, not starting with a digit. Environment variable names and
// unquoted SQL identifiers are checked with it.
func IsName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '_', 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		case '0' <= c && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}
