package serialcb

// PortNamesHint says what serial ports are called here, for messages that
// find none.
const PortNamesHint = `a USB adapter shows up as COM3, COM4, … (Device Manager, "Ports (COM & LPT)"); COM10 and up also as \\.\COM10`

const arrivalHint = `Device Manager, "Ports (COM & LPT)", shows it arriving`

func busyHint(path string) string {
	return "another program holds " + path + " (a terminal, a vendor tool, another serialcbd); close it or pick another port"
}
