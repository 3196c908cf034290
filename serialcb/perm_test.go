//go:build linux

package serialcb

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// childEnv makes the test binary, started again as another user, open one
// port and print the error: root bypasses both the device's permissions and
// TIOCEXCL, so only an unprivileged process sees the errors users see.
const childEnv = "SERIALCB_TEST_OPEN_AS_CHILD"

func TestOpenChildHelper(t *testing.T) {
	path := os.Getenv(childEnv)
	if path == "" {
		t.Skip("helper for TestOpenErrorsAsUnprivilegedUser")
	}
	p, err := Open(PortConfig{Name: "p", Path: path, Baud: 9600})
	if err == nil {
		p.Close()
		fmt.Println("OPENED")
		return
	}
	var oe *OpenError
	kind := "other"
	if errors.As(err, &oe) {
		kind = oe.Kind.String()
	}
	fmt.Printf("KIND=%s\nERR=%v\n", kind, err)
}

// openAsNobody runs the helper as uid/gid 65534 and returns its output.
func openAsNobody(t *testing.T, path string) string {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "serialcb.test")
	src, err := os.Open(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(bin, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	dst.Close()
	for d := dir; d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		_ = os.Chmod(d, 0o755) // the child must reach the binary
	}
	cmd := exec.Command(bin, "-test.run=^TestOpenChildHelper$", "-test.v")
	cmd.Env = append(os.Environ(), childEnv+"="+path)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	t.Logf("child as uid 65534:\n%s", out)
	return string(out)
}

func TestOpenErrorsAsUnprivilegedUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root, to start a child process as another user")
	}
	t.Run("permission denied", func(t *testing.T) {
		p := newPair(t) // its /dev/pts/N belongs to root, mode 0620: nobody may not open it
		out := openAsNobody(t, p.SlavePath())
		for _, want := range []string{"KIND=" + OpenPermission.String(), "dialout", "usermod -aG dialout", "SupplementaryGroups=dialout", "--group-add dialout"} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
	})
	t.Run("busy", func(t *testing.T) {
		p := newPair(t)
		if err := os.Chmod(p.SlavePath(), 0o666); err != nil {
			t.Fatal(err)
		}
		held, err := Open(PortConfig{Name: "p", Path: p.SlavePath(), Baud: 9600}) // takes TIOCEXCL
		if err != nil {
			t.Fatal(err)
		}
		defer held.Close()
		out := openAsNobody(t, p.SlavePath())
		for _, want := range []string{"KIND=" + OpenBusy.String(), "another process holds the port", "fuser -v " + p.SlavePath()} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
	})
}
