package natssink

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// sharedAddr is the NATS server (with JetStream) the integration tests use.
const sharedAddr = "127.0.0.1:4222"

const natsServerBin = "/usr/sbin/nats-server"

const startCmd = "start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log"

// needNATS returns the shared server's URL, or skips the test (fails it
// under CI=true) when no server answers there.
func needNATS(tb testing.TB) string {
	tb.Helper()
	conn, err := net.DialTimeout("tcp", sharedAddr, 2*time.Second)
	if err != nil {
		msg := fmt.Sprintf("no NATS server at %s (%v); start one with: %s", sharedAddr, err, startCmd)
		if os.Getenv("CI") == "true" {
			tb.Fatal(msg)
		}
		tb.Skip(msg)
	}
	_ = conn.Close()
	return "nats://" + sharedAddr
}

var uniq atomic.Int64

// names returns a stream name and a subject prefix no other test (or run)
// uses.
func names(tb testing.TB) (stream, prefix string) {
	tb.Helper()
	n := uniq.Add(1)
	id := fmt.Sprintf("%d_%d_%d", os.Getpid(), time.Now().UnixNano()%1e9, n)
	return "SCBD_T" + id, "scbdtest." + id
}

// client is a test's own connection to a server, for setting up and
// reading back streams.
type client struct {
	nc *nats.Conn
	js jetstream.JetStream
}

func dial(tb testing.TB, url string) *client {
	tb.Helper()
	nc, err := nats.Connect(url, nats.Timeout(5*time.Second))
	if err != nil {
		tb.Fatalf("connect %s: %v", url, err)
	}
	tb.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatal(err)
	}
	return &client{nc: nc, js: js}
}

// createStream creates a file stream taking subjects, deleted at cleanup.
func (c *client) createStream(tb testing.TB, name string, subjects ...string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.js.CreateStream(ctx, jetstream.StreamConfig{
		Name: name, Subjects: subjects, Storage: jetstream.FileStorage, Duplicates: 2 * time.Minute,
	}); err != nil {
		tb.Fatalf("create stream %s: %v", name, err)
	}
	c.deleteAtCleanup(tb, name)
}

func (c *client) deleteAtCleanup(tb testing.TB, name string) {
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = c.js.DeleteStream(ctx, name)
	})
}

// storedMsg is one message read back from a stream.
type storedMsg struct {
	subject string
	id      string
	data    []byte
}

// read returns every message of the stream, in order.
func (c *client) read(tb testing.TB, name string) []storedMsg {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	st, err := c.js.Stream(ctx, name)
	if err != nil {
		tb.Fatalf("stream %s: %v", name, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	var out []storedMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			tb.Fatalf("get message %d of %s: %v", seq, name, err)
		}
		out = append(out, storedMsg{subject: m.Subject, id: m.Header.Get(jetstream.MsgIDHeader), data: m.Data})
	}
	if uint64(len(out)) != info.State.Msgs {
		tb.Fatalf("read %d messages, stream says %d", len(out), info.State.Msgs)
	}
	return out
}

// server is a private nats-server that a test may kill and restart.
type server struct {
	tb    testing.TB
	port  int
	dir   string
	extra []string
	cmd   *exec.Cmd
	done  chan struct{} // closed when the log reader has finished
}

func freePort(tb testing.TB) int {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startServer starts a private JetStream server on a free port with its
// store in a temporary directory; it is killed at cleanup.
func startServer(tb testing.TB) *server {
	tb.Helper()
	return startServerOn(tb, freePort(tb))
}

// startServerOn is startServer on the given port; extra are more
// nats-server arguments (TLS, authentication).
func startServerOn(tb testing.TB, port int, extra ...string) *server {
	tb.Helper()
	if _, err := os.Stat(natsServerBin); err != nil {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("%s: %v (apt-get install nats-server)", natsServerBin, err)
		}
		tb.Skipf("%s: %v (apt-get install nats-server)", natsServerBin, err)
	}
	s := &server{tb: tb, port: port, dir: tb.TempDir(), extra: extra}
	s.start()
	tb.Cleanup(s.kill)
	return s
}

func (s *server) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", s.port) }

// start runs the server and waits for its "Server is ready" line.
func (s *server) start() {
	s.tb.Helper()
	args := append([]string{"-a", "127.0.0.1", "-p", fmt.Sprint(s.port), "-js", "-sd", s.dir}, s.extra...)
	cmd := exec.Command(natsServerBin, args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		s.tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		s.tb.Fatal(err)
	}
	ready := make(chan struct{})
	done := make(chan struct{})
	var lines []string
	go func() {
		defer close(done)
		sc := bufio.NewScanner(stderr)
		signalled := false
		for sc.Scan() {
			if !signalled {
				lines = append(lines, sc.Text())
				if strings.Contains(sc.Text(), "Server is ready") {
					close(ready)
					signalled = true
				}
			}
		}
	}()
	select {
	case <-ready:
	case <-done:
		_ = cmd.Wait()
		s.tb.Fatalf("nats-server exited before it was ready:\n%s", strings.Join(lines, "\n"))
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		_ = cmd.Wait()
		s.tb.Fatalf("nats-server not ready after 30s:\n%s", strings.Join(lines, "\n"))
	}
	s.cmd, s.done = cmd, done
}

// kill stops the server with SIGKILL, as a crash would, and waits for it.
func (s *server) kill() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.done
	_ = s.cmd.Wait()
	s.cmd = nil
}
