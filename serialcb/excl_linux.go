package serialcb

import (
	"os"

	"golang.org/x/sys/unix"
)

// tiocgexcl is TIOCGEXCL, _IOR('T', 0x40, int): the asm-generic value, the
// one of every Linux architecture serialcbd ships for (x/sys lacks it).
const tiocgexcl = 0x80045440

// HeldExclusively reports whether another process holds the tty at path
// in exclusive mode (TIOCEXCL, as go.bug.st/serial and so serialcbd open
// ports). Root may open such a port anyway, and closing it through
// go.bug.st/serial would clear the hold: a program that writes to a port
// another may own asks first.
func HeldExclusively(path string) (bool, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY, 0)
	if err != nil {
		return false, err
	}
	defer f.Close()
	v, err := unix.IoctlGetInt(int(f.Fd()), tiocgexcl)
	if err != nil {
		return false, err
	}
	return v != 0, nil
}
