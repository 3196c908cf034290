//go:build !linux && !darwin && !windows

package serialcb

// PortNamesHint says what serial ports are called here, for messages that
// find none.
const PortNamesHint = "serial devices are in /dev (e.g. /dev/cuaU0 on FreeBSD)"

const arrivalHint = "`dmesg | tail` shows it arriving"

func busyHint(path string) string {
	return "another process holds the port (find it with `fstat " + path + "`); stop it or pick another port"
}
