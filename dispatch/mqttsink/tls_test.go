package mqttsink

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/serialcbd/serialcbd/asyncloop"
	"github.com/serialcbd/serialcbd/dispatch"
	"github.com/serialcbd/serialcbd/dispatch/sinkconf"
)

// writeCert writes a PEM certificate and key for name, signed by parent
// (self-signed when parent is nil), and returns them with the file paths.
func writeCert(t *testing.T, dir, name string, isCA bool, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey, string, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	if isCA {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		tmpl.KeyUsage |= x509.KeyUsageCertSign
	} else {
		tmpl.DNSNames = []string{"localhost"}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPath, keyPath := filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return cert, key, certPath, keyPath
}

// TestIntegrationTLS publishes over mqtts:// to a private Mosquitto whose
// TLS listener requires a client certificate from a private CA: ca_file,
// cert_file and key_file are used, and the messages arrive (read by a
// subscriber on the broker's plain listener).
func TestIntegrationTLS(t *testing.T) {
	certDir := t.TempDir()
	ca, caKey, caPath, _ := writeCert(t, certDir, "ca", true, nil, nil)
	_, _, srvCert, srvKey := writeCert(t, certDir, "server", false, ca, caKey)
	_, _, cliCert, cliKey := writeCert(t, certDir, "client", false, ca, caKey)
	tlsAddr := freeAddr(t)
	tlsPort := tlsAddr[strings.LastIndexByte(tlsAddr, ':')+1:]
	b := startPrivateBroker(t, func(string) string {
		return "listener " + tlsPort + " 127.0.0.1\n" +
			"cafile " + caPath + "\ncertfile " + srvCert + "\nkeyfile " + srvKey + "\n" +
			"require_certificate true\n"
	})

	prefix := topicPrefix(t)
	sub := subscribe(t, b.addr, prefix+"/#", "", idKey)
	sink := newSink(t, "mqtts://"+tlsAddr+"/"+prefix+"/{port}", nil, func(c *Config) {
		c.TLS = sinkconf.TLS{CAFile: caPath, CertFile: cliCert, KeyFile: cliKey}
	})
	p := newPipeline(t, sink, lane)
	if !sink.Connected() {
		t.Fatal("mqtts sink did not connect")
	}
	var keys []string
	var futs []*asyncloop.Future[dispatch.Receipt]
	for i := range 1000 {
		f := p.frame(fmt.Sprint("port", i%2), nil)
		keys = append(keys, f.ID.String())
		futs = append(futs, p.d.Submit(f))
	}
	results(t, futs)
	p.stop(t)
	sub.waitFor(t, keys)
	sub.check(t, keys)
}

// TestIntegrationTLSWrongCA: a broker whose certificate the sink does not trust is
// unreachable (one warning at start, retryable writes), not accepted.
func TestIntegrationTLSWrongCA(t *testing.T) {
	certDir := t.TempDir()
	ca, caKey, _, _ := writeCert(t, certDir, "ca", true, nil, nil)
	_, _, srvCert, srvKey := writeCert(t, certDir, "server", false, ca, caKey)
	_, _, otherCA, _ := writeCert(t, certDir, "other-ca", true, nil, nil)
	tlsAddr := freeAddr(t)
	tlsPort := tlsAddr[strings.LastIndexByte(tlsAddr, ':')+1:]
	startPrivateBroker(t, func(string) string {
		return "listener " + tlsPort + " 127.0.0.1\ncertfile " + srvCert + "\nkeyfile " + srvKey + "\n"
	})
	sink := newSink(t, "mqtts://"+tlsAddr+"/a", nil, func(c *Config) { c.TLS.CAFile = otherCA })
	if err := sink.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	if sink.Connected() {
		t.Fatal("connected to a broker with an untrusted certificate")
	}
	if err := sink.Write(context.Background(), testFrames(1)); !notConnected(err) || dispatch.IsPermanent(err) {
		t.Fatalf("write: %v; want retryable ErrNotConnected", err)
	}
}
