package natssink

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/serialcbd/serialcbd/dispatch/sinkconf"
	"github.com/serialcbd/serialcbd/serialcb"
)

// writeCert writes a self-signed certificate for 127.0.0.1 and
// "nats.test" and its key as PEM files in dir.
func writeCert(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "nats.test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              []string{"nats.test"},
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// TestIntegrationTLS publishes over TLS to a private server whose
// certificate is trusted through tls.ca_file, with a tls:// spec and with a
// nats:// spec plus tls settings; an untrusted certificate is refused.
func TestIntegrationTLS(t *testing.T) {
	dir := t.TempDir()
	cert, key := writeCert(t, dir)
	srv := startServerOn(t, freePort(t), "--tls", "--tlscert", cert, "--tlskey", key)
	hostPort := fmt.Sprintf("127.0.0.1:%d", srv.port)

	for _, tc := range []struct {
		name string
		spec string
		tls  sinkconf.TLS
	}{
		{"tls scheme", "tls://" + hostPort + "/secure.{port}", sinkconf.TLS{CAFile: cert}},
		{"nats scheme with tls settings", "nats://" + hostPort + "/secure.{port}", sinkconf.TLS{CAFile: cert, ServerName: "nats.test"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSink(t, tc.spec, func(c *Config) { c.JetStream, c.TLS = false, tc.tls })
			var gen serialcb.IDGen
			if err := write(t, s, frames(&gen, "p", 10, false)); err != nil {
				t.Fatal(err)
			}
		})
	}
	t.Run("untrusted", func(t *testing.T) {
		core, logs := observer.New(zapcore.WarnLevel)
		cfg, _ := ParseSpec("tls://" + hostPort + "/secure.x")
		cfg.JetStream = false
		s, err := New(cfg, zap.New(core))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if err := s.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		if logs.Len() != 1 {
			t.Fatalf("want one warning, got %v", logs.All())
		}
		var gen serialcb.IDGen
		if err := write(t, s, frames(&gen, "p", 1, false)); !errors.Is(err, ErrNotConnected) {
			t.Fatalf("write over an untrusted connection: %v", err)
		}
	})
}

// TestIntegrationAuth connects to private servers that require a user and
// password or a token, read from the environment variables the settings
// name; a missing variable fails Start.
func TestIntegrationAuth(t *testing.T) {
	t.Setenv("SCBD_TEST_NATS_PW", "s3cret")
	t.Setenv("SCBD_TEST_NATS_TOKEN", "t0ken")
	userSrv := startServerOn(t, freePort(t), "--user", "scbd", "--pass", "s3cret")
	tokenSrv := startServerOn(t, freePort(t), "--auth", "t0ken")
	for _, tc := range []struct {
		name string
		url  string
		edit func(*Config)
	}{
		{"user", userSrv.url(), func(c *Config) { c.User, c.PasswordEnv = "scbd", "SCBD_TEST_NATS_PW" }},
		{"token", tokenSrv.url(), func(c *Config) { c.TokenEnv = "SCBD_TEST_NATS_TOKEN" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSink(t, tc.url+"/auth.{port}", func(c *Config) {
				tc.edit(c)
				c.Stream = "AUTH"
			})
			var gen serialcb.IDGen
			batch := frames(&gen, "p", 10, false)
			if err := write(t, s, batch); err != nil {
				t.Fatal(err)
			}
		})
	}
	t.Run("missing variable", func(t *testing.T) {
		cfg, _ := ParseSpec(tokenSrv.url() + "/auth.x")
		cfg.TokenEnv = "SCBD_TEST_NATS_UNSET"
		s, err := New(cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if err := s.Start(context.Background()); err == nil {
			t.Fatal("Start succeeded without the token")
		}
	})
	t.Run("wrong password", func(t *testing.T) {
		t.Setenv("SCBD_TEST_NATS_PW", "wrong")
		cfg, _ := ParseSpec(userSrv.url() + "/auth.x")
		cfg.User, cfg.PasswordEnv = "scbd", "SCBD_TEST_NATS_PW"
		s, err := New(cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if err := s.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		var gen serialcb.IDGen
		if err := write(t, s, frames(&gen, "p", 1, false)); !errors.Is(err, ErrNotConnected) {
			t.Fatalf("write with a wrong password: %v", err)
		}
	})
}
