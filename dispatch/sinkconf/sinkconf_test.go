package sinkconf

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestKeyError(t *testing.T) {
	err := KeyErrorf("format", "x sink: format %q: unknown", "yaml")
	if err.Error() != `x sink: format "yaml": unknown` {
		t.Errorf("Error() = %q", err)
	}
	ke, ok := errors.AsType[*KeyError](err)
	if !ok || ke.ConfigKey() != "format" || ke.Key != "format" {
		t.Fatalf("KeyErrorf() = %#v, want a *KeyError for format", err)
	}
	inner := &KeyError{Key: "tls.ca_file", Err: fs.ErrNotExist}
	if !errors.Is(inner, fs.ErrNotExist) {
		t.Error("KeyError does not unwrap to its Err")
	}
}

func TestTLSValidate(t *testing.T) {
	tests := []struct {
		name  string
		tls   TLS
		isSet bool
		key   string // "" for no error
	}{
		{name: "empty", tls: TLS{}},
		{name: "ca file", tls: TLS{CAFile: "ca.pem"}, isSet: true},
		{name: "insecure", tls: TLS{InsecureSkipVerify: true}, isSet: true},
		{name: "server name", tls: TLS{ServerName: "x"}, isSet: true},
		{name: "key pair", tls: TLS{CertFile: "c.pem", KeyFile: "k.pem"}, isSet: true},
		{name: "cert without key", tls: TLS{CertFile: "c.pem"}, isSet: true, key: "tls.cert_file"},
		{name: "key without cert", tls: TLS{CAFile: "ca.pem", KeyFile: "k.pem"}, isSet: true, key: "tls.key_file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.tls.IsSet(); got != tt.isSet {
				t.Errorf("IsSet() = %v, want %v", got, tt.isSet)
			}
			err := tt.tls.Validate()
			if tt.key == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			ke, ok := errors.AsType[*KeyError](err)
			if !ok || ke.Key != tt.key {
				t.Fatalf("Validate() = %v, want a KeyError for %s", err, tt.key)
			}
			if want := "tls: cert_file and key_file go together: set both or neither"; err.Error() != want {
				t.Errorf("Validate() = %q, want %q", err, want)
			}
		})
	}
}

func TestTLSConfig(t *testing.T) {
	pki := newPKI(t)
	dir := t.TempDir()
	notPEM := writeFile(t, dir, "junk.pem", []byte("junk"))
	missing := filepath.Join(dir, "nope.pem")

	tests := []struct {
		name       string
		tls        TLS
		serverName string
		wantName   string
		wantCA     bool
		wantCert   bool
		key        string // of the error; "" for none
		err        string
	}{
		{name: "empty", wantName: ""},
		{name: "server name default", serverName: "broker.test", wantName: "broker.test"},
		{name: "server_name wins", tls: TLS{ServerName: "other.test"}, serverName: "broker.test", wantName: "other.test"},
		{name: "server_name alone", tls: TLS{ServerName: "other.test"}, wantName: "other.test"},
		{name: "ca file", tls: TLS{CAFile: pki.caFile}, wantCA: true},
		{name: "key pair", tls: TLS{CAFile: pki.caFile, CertFile: pki.certFile, KeyFile: pki.keyFile}, wantCA: true, wantCert: true},
		{name: "missing ca file", tls: TLS{CAFile: missing}, key: "tls.ca_file", err: "read tls ca_file: open " + missing},
		{name: "ca file not PEM", tls: TLS{CAFile: notPEM}, key: "tls.ca_file", err: `tls ca_file "` + notPEM + `": no PEM certificate found`},
		{name: "missing key file", tls: TLS{CertFile: pki.certFile, KeyFile: missing}, key: "tls.cert_file", err: "tls cert_file/key_file: open " + missing},
		{name: "key of another cert", tls: TLS{CertFile: pki.certFile, KeyFile: pki.otherKeyFile}, key: "tls.cert_file", err: "tls cert_file/key_file: "},
		{name: "CA read before key pair", tls: TLS{CAFile: notPEM, CertFile: missing, KeyFile: missing}, key: "tls.ca_file", err: `tls ca_file "` + notPEM + `": no PEM certificate found`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := tt.tls.Config(tt.serverName)
			if tt.key != "" {
				ke, ok := errors.AsType[*KeyError](err)
				if !ok || ke.Key != tt.key || !strings.HasPrefix(err.Error(), tt.err) {
					t.Fatalf("Config() error = %v, want a KeyError for %s starting %q", err, tt.key, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Config() = %v", err)
			}
			if cfg.MinVersion != tls.VersionTLS12 {
				t.Errorf("MinVersion = %x, want TLS 1.2", cfg.MinVersion)
			}
			if cfg.ServerName != tt.wantName {
				t.Errorf("ServerName = %q, want %q", cfg.ServerName, tt.wantName)
			}
			if cfg.InsecureSkipVerify {
				t.Error("InsecureSkipVerify set")
			}
			if got := cfg.RootCAs != nil && cfg.RootCAs.Equal(pki.pool); got != tt.wantCA {
				t.Errorf("RootCAs is the CA file's pool: %v, want %v", got, tt.wantCA)
			}
			if got := len(cfg.Certificates) == 1 && cfg.Certificates[0].Leaf != nil && cfg.Certificates[0].Leaf.Equal(pki.client); got != tt.wantCert {
				t.Errorf("Certificates hold the client certificate: %v, want %v", got, tt.wantCert)
			}
		})
	}

	t.Run("insecure", func(t *testing.T) {
		cfg, err := TLS{InsecureSkipVerify: true}.Config("h")
		if err != nil || !cfg.InsecureSkipVerify {
			t.Fatalf("Config() = %+v, %v; want InsecureSkipVerify", cfg, err)
		}
	})
}

// TestTLSConfigHandshake runs a handshake with a server that requires a
// client certificate from the private CA: the built config trusts the CA,
// presents the key pair, and checks the default or the configured name.
func TestTLSConfigHandshake(t *testing.T) {
	pki := newPKI(t)
	tests := []struct {
		name    string
		tls     TLS
		wantErr string
	}{
		{name: "trusted, default name", tls: TLS{CAFile: pki.caFile, CertFile: pki.certFile, KeyFile: pki.keyFile}},
		{name: "server_name mismatch", tls: TLS{CAFile: pki.caFile, CertFile: pki.certFile, KeyFile: pki.keyFile, ServerName: "other.test"}, wantErr: "other.test"},
		{name: "system roots", tls: TLS{CertFile: pki.certFile, KeyFile: pki.keyFile}, wantErr: "certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := tt.tls.Config("server.test")
			if err != nil {
				t.Fatal(err)
			}
			// A loopback TCP connection, not net.Pipe: a failing side
			// writes its alert while the other may still be writing its
			// flight, and an unbuffered pipe deadlocks on that.
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			done := make(chan error, 1)
			go func() {
				srv, err := ln.Accept()
				if err != nil {
					done <- err
					return
				}
				s := tls.Server(srv, &tls.Config{
					Certificates: []tls.Certificate{pki.server},
					ClientCAs:    pki.pool,
					ClientAuth:   tls.RequireAndVerifyClientCert,
				})
				err = s.Handshake()
				_ = s.Close()
				done <- err
			}()
			cli, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			c := tls.Client(cli, cfg)
			err = c.Handshake()
			_ = c.Close()
			srvErr := <-done
			if tt.wantErr == "" {
				if err != nil || srvErr != nil {
					t.Fatalf("handshake: client %v, server %v", err, srvErr)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("handshake error = %v, want one mentioning %q", err, tt.wantErr)
			}
		})
	}
}

// pki is a private CA, a server certificate for server.test and a client
// key pair it signed, as files in a temporary directory.
type pki struct {
	caFile, certFile, keyFile, otherKeyFile string
	pool                                    *x509.CertPool
	client                                  *x509.Certificate
	server                                  tls.Certificate
}

func newPKI(t *testing.T) pki {
	t.Helper()
	dir := t.TempDir()
	caKey := newKey(t)
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER := createCert(t, caTmpl, caTmpl, caKey, caKey)
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	leaf := func(serial int64, name string, usage x509.ExtKeyUsage) ([]byte, *ecdsa.PrivateKey) {
		key := newKey(t)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial),
			Subject:      pkix.Name{CommonName: name},
			DNSNames:     []string{name},
			NotBefore:    time.Now().Add(-time.Hour),
			NotAfter:     time.Now().Add(time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		}
		return createCert(t, tmpl, ca, key, caKey), key
	}
	cliDER, cliKey := leaf(2, "client.test", x509.ExtKeyUsageClientAuth)
	srvDER, srvKey := leaf(3, "server.test", x509.ExtKeyUsageServerAuth)

	p := pki{
		caFile:       writeFile(t, dir, "ca.pem", pemBlock("CERTIFICATE", caDER)),
		certFile:     writeFile(t, dir, "client.pem", pemBlock("CERTIFICATE", cliDER)),
		keyFile:      writeFile(t, dir, "client.key", keyPEM(t, cliKey)),
		otherKeyFile: writeFile(t, dir, "other.key", keyPEM(t, newKey(t))),
		pool:         x509.NewCertPool(),
		server:       tls.Certificate{Certificate: [][]byte{srvDER}, PrivateKey: srvKey},
	}
	p.pool.AddCert(ca)
	if p.client, err = x509.ParseCertificate(cliDER); err != nil {
		t.Fatal(err)
	}
	return p
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func createCert(t *testing.T, tmpl, parent *x509.Certificate, key, parentKey *ecdsa.PrivateKey) []byte {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func keyPEM(t *testing.T, key *ecdsa.PrivateKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pemBlock("PRIVATE KEY", der)
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func writeFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestIsName(t *testing.T) {
	for _, tt := range []struct {
		s    string
		want bool
	}{
		{"frames", true}, {"_x9", true}, {"PG_PASSWORD", true}, {"A", true},
		{"", false}, {"9lives", false}, {"my-table", false}, {"a.b", false}, {"é", false}, {"a b", false},
	} {
		if got := IsName(tt.s); got != tt.want {
			t.Errorf("IsName(%q) = %v, want %v", tt.s, got, tt.want)
		}
	}
}
