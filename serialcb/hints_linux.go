package serialcb

// PortNamesHint says what serial ports are called here, for messages that
// find none.
const PortNamesHint = "a USB adapter shows up as /dev/ttyUSB* or /dev/ttyACM*, a Raspberry Pi's UART as /dev/serial0"

const arrivalHint = "`dmesg | tail` shows it arriving"

func busyHint(path string) string {
	return "another process holds the port (find it with `fuser -v " + path + "`); stop it or pick another port"
}
