//go:build linux

package serialcb

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/serialcbd/serialcbd/serialcb/vport"
)

// TestOpenRefusesAPortHeldElsewhere: a second open of a port, even by
// root (which TIOCEXCL does not stop), is refused with the holder's pid,
// and does not clear the holder's exclusivity.
func TestOpenRefusesAPortHeldElsewhere(t *testing.T) {
	p := newPair(t)
	held, err := Open(PortConfig{Name: "p", Path: p.SlavePath(), Baud: 9600})
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()

	_, err = Open(PortConfig{Name: "q", Path: p.SlavePath(), Baud: 9600})
	oe, ok := errors.AsType[*OpenError](err)
	if !ok || oe.Kind != OpenBusy || !errors.Is(err, ErrPortBusy) {
		t.Fatalf("second Open() = %v, want an OpenBusy error", err)
	}
	if oe.PID != os.Getpid() || !strings.Contains(err.Error(), "pid "+strconv.Itoa(os.Getpid())) {
		t.Errorf("second Open() = %v (PID %d), want the holder's pid %d", err, oe.PID, os.Getpid())
	}

	if os.Geteuid() == 0 {
		// The refused open did not reach the device, so the holder's
		// TIOCEXCL is intact: an unprivileged process is still refused.
		if err := os.Chmod(p.SlavePath(), 0o666); err != nil {
			t.Fatal(err)
		}
		if out := openAsNobody(t, p.SlavePath()); !strings.Contains(out, "KIND="+OpenBusy.String()) {
			t.Errorf("after a refused second open, an unprivileged open got:\n%s", out)
		}
	}

	if err := held.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := Open(PortConfig{Name: "q", Path: p.SlavePath(), Baud: 9600})
	if err != nil {
		t.Fatalf("Open() after the holder closed: %v", err)
	}
	again.Close()
}

// TestOpenRefusesTheSameDeviceByAnotherName: the lock is the device's, so
// a link to it (as /dev/serial/by-id/… is) shares it.
func TestOpenRefusesTheSameDeviceByAnotherName(t *testing.T) {
	link := filepath.Join(t.TempDir(), "ttyLINK")
	p, err := vport.OpenLink(link)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	held, err := Open(PortConfig{Name: "p", Path: link, Baud: 9600})
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	if _, err := Open(PortConfig{Name: "q", Path: p.SlavePath(), Baud: 9600}); !errors.Is(err, ErrPortBusy) {
		t.Fatalf("Open() by the device's own name = %v, want busy", err)
	}
}

func TestUUCPLockFile(t *testing.T) {
	p := newPair(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "LCK.."+filepath.Base(p.SlavePath()))

	l, err := lockPort(p.SlavePath(), dir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(file)
	if want := fmt.Sprintf("%10d\n", os.Getpid()); err != nil || string(b) != want {
		t.Fatalf("lock file = %q, %v; want %q", b, err, want)
	}
	l.release()
	if _, err := os.Stat(file); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("lock file after release: %v, want it gone", err)
	}

	t.Run("stale", func(t *testing.T) {
		dead := exec.Command("true")
		if err := dead.Run(); err != nil {
			t.Skip("no `true` to make a dead pid:", err)
		}
		if err := os.WriteFile(file, fmt.Appendf(nil, "%10d\n", dead.Process.Pid), 0o644); err != nil {
			t.Fatal(err)
		}
		l, err := lockPort(p.SlavePath(), dir)
		if err != nil {
			t.Fatalf("lockPort() with a stale lock file = %v, want it taken over", err)
		}
		defer l.release()
		if pid, _ := readLockPID(file); pid != os.Getpid() {
			t.Errorf("lock file holds pid %d, want ours", pid)
		}
	})

	t.Run("held by a live process", func(t *testing.T) {
		other := exec.Command("sleep", "600")
		if err := other.Start(); err != nil {
			t.Skip("no `sleep` to hold a lock:", err)
		}
		defer func() { other.Process.Kill(); other.Wait() }()
		if err := os.WriteFile(file, fmt.Appendf(nil, "%10d\n", other.Process.Pid), 0o644); err != nil {
			t.Fatal(err)
		}
		defer os.Remove(file)
		_, err := lockPort(p.SlavePath(), dir)
		oe, ok := errors.AsType[*OpenError](err)
		if !ok || oe.Kind != OpenBusy || oe.PID != other.Process.Pid {
			t.Fatalf("lockPort() = %v, want busy with pid %d", err, other.Process.Pid)
		}
		for _, want := range []string{fmt.Sprintf("sleep (pid %d)", other.Process.Pid), file, "stop that process"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q lacks %q", err, want)
			}
		}
		// The flock taken before the lock file was found is released.
		l, err := lockPort(p.SlavePath(), "")
		if err != nil {
			t.Fatalf("flock left behind: %v", err)
		}
		l.release()
	})
}
