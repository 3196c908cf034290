package serialcb

// PortNamesHint says what serial ports are called here, for messages that
// find none.
const PortNamesHint = "a USB adapter shows up as /dev/cu.usbserial-* or /dev/cu.usbmodem*; use the cu. name, not tty."

const arrivalHint = "`ls /dev/cu.*` shows it once the driver has it"

func busyHint(path string) string {
	return "another process holds the port (find it with `lsof " + path + "`); stop it or pick another port"
}
