//go:build linux || darwin || freebsd || openbsd || netbsd || dragonfly

package serialcb

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// uucpLockDir is where minicom, picocom, cu and ModemManager look for
// UUCP-style lock files (LCK..ttyUSB0 holding the owner's pid).
const uucpLockDir = "/var/lock"

// portLock is the advisory lock a process holds on a port while it has it
// open: an flock on the device, and a UUCP lock file where the lock
// directory exists and is writable. TIOCEXCL, which go.bug.st/serial sets,
// does not stop root, and the second opener's close clears it for the
// first; these locks stop root too, and tell who holds the port.
type portLock struct {
	fd   int    // an fd of the device holding the flock; -1 for none
	file string // the UUCP lock file we created; "" for none
}

// lockPort takes the locks of the device at path, with UUCP lock files in
// dir. A port held by another process (or another open in this one) is an
// *OpenError of kind OpenBusy naming the holder's pid when known. A device
// that cannot be opened or locked for another reason is not an error here:
// the real open reports it.
func lockPort(path, dir string) (*portLock, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOCTTY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return &portLock{fd: -1}, nil
	}
	l := &portLock{fd: fd}
	if err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); err != nil {
		pid := 0
		if errors.Is(err, unix.EWOULDBLOCK) {
			pid = flockHolder(fd)
		}
		unix.Close(fd)
		if !errors.Is(err, unix.EWOULDBLOCK) {
			return &portLock{fd: -1}, nil // no flock here (a file system without it)
		}
		if pid == 0 {
			// Another open of this process, or a holder /proc does not show;
			// a UUCP lock file may still name it.
			pid, _ = readLockPID(uucpLockFile(path, dir))
		}
		return nil, busyError(path, pid, "")
	}
	if dir == "" {
		return l, nil
	}
	file := uucpLockFile(path, dir)
	for range 2 { // a stale lock file is removed once
		err := createLockFile(file)
		if err == nil {
			l.file = file
			return l, nil
		}
		if !errors.Is(err, os.ErrExist) {
			return l, nil // no lock directory, or not ours to write: the flock holds
		}
		pid, ok := readLockPID(file)
		if ok && pid != os.Getpid() && processAlive(pid) {
			l.release()
			return nil, busyError(path, pid, file)
		}
		// Stale: its process is gone (or it is ours from a previous life
		// with the same pid, as pid 1 in a container): take it over.
		if err := os.Remove(file); err != nil && !errors.Is(err, os.ErrNotExist) {
			return l, nil
		}
	}
	return l, nil
}

// release drops the locks. It is idempotent.
func (l *portLock) release() {
	if l == nil {
		return
	}
	if l.file != "" {
		// Only our own file: a process that found it stale may own it now.
		if pid, ok := readLockPID(l.file); ok && pid == os.Getpid() {
			os.Remove(l.file)
		}
		l.file = ""
	}
	if l.fd >= 0 {
		unix.Close(l.fd)
		l.fd = -1
	}
}

// uucpLockFile is dir/LCK..NAME, NAME the base name of the device the path
// resolves to (/dev/serial/by-id/… and /dev/ttyUSB0 share one lock), as
// minicom and picocom name it.
func uucpLockFile(path, dir string) string {
	if real, err := filepath.EvalSymlinks(path); err == nil {
		path = real
	}
	return filepath.Join(dir, "LCK.."+filepath.Base(path))
}

// createLockFile creates file holding our pid in the HDB UUCP format: ten
// characters, right-aligned, and a newline. It is written to a temporary
// file and linked into place, so a reader never sees a partial pid.
func createLockFile(file string) error {
	tmp, err := os.CreateTemp(filepath.Dir(file), ".LTMP.")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	_, err = fmt.Fprintf(tmp, "%10d\n", os.Getpid())
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o644)
	}
	if err != nil {
		return err
	}
	return os.Link(tmp.Name(), file)
}

// readLockPID reads the pid of a UUCP lock file: ASCII (HDB) or a binary
// int32 (old UUCP).
func readLockPID(file string) (int, bool) {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0, false
	}
	if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 {
		return pid, true
	}
	if len(b) == 4 {
		if pid := int(int32(uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24)); pid > 0 {
			return pid, true
		}
	}
	return 0, false
}

// processAlive reports whether pid is a running process (EPERM: it is, but
// another user's).
func processAlive(pid int) bool {
	err := unix.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// flockHolder returns the pid holding an flock on fd's file, from
// /proc/locks (Linux); 0 when unknown.
func flockHolder(fd int) int {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return 0
	}
	f, err := os.Open("/proc/locks")
	if err != nil {
		return 0
	}
	defer f.Close()
	// "1: FLOCK  ADVISORY  WRITE 1234 00:05:1037 0 EOF"; a waiter has "->"
	// after the number.
	id := fmt.Sprintf("%02x:%02x:%d", unix.Major(uint64(st.Dev)), unix.Minor(uint64(st.Dev)), st.Ino)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || fields[1] != "FLOCK" || fields[5] != id {
			continue
		}
		if pid, err := strconv.Atoi(fields[4]); err == nil && pid != os.Getpid() {
			return pid
		}
	}
	return 0
}

// busyError is the OpenBusy error of a port whose lock pid holds (0:
// unknown), with the lock file when that is what told.
func busyError(path string, pid int, file string) *OpenError {
	e := &OpenError{Path: path, Kind: OpenBusy, PID: pid}
	switch {
	case pid == os.Getpid():
		e.Err = errors.New("locked by this process (pid " + strconv.Itoa(pid) + "): the port is open already")
		e.Hint = "open each port once"
		return e
	case pid > 0:
		who := "pid " + strconv.Itoa(pid)
		if comm := processName(pid); comm != "" {
			who = comm + " (" + who + ")"
		}
		e.Err = errors.New("locked by " + who)
		if file != "" {
			e.Err = fmt.Errorf("locked by %s, lock file %s", who, file)
		}
		e.Hint = "stop that process or pick another port; root is refused too, so that it cannot take the port from under a running reader"
	default:
		e.Err = errors.New("locked by another process")
		e.Hint = "find it with `fuser -v " + path + "`; stop it or pick another port"
	}
	return e
}

// processName returns a process's command name (Linux), or "".
func processName(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
