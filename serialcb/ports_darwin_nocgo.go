//go:build darwin && !cgo

package serialcb

import (
	"path/filepath"
	"strings"

	"go.bug.st/serial"
)

// USBDetails is false: go.bug.st/serial reads USB descriptors on macOS
// through IOKit, which needs cgo. A build with CGO_ENABLED=1 on a Mac lists
// them; this one lists the devices only.
const USBDetails = false

// listPorts lists the call-out devices /dev/cu.*: the ones to open. Their
// /dev/tty.* twins wait for carrier detect on open, so they are left out.
func listPorts() ([]PortInfo, error) {
	names, err := serial.GetPortsList()
	if err != nil {
		return nil, err
	}
	ports := make([]PortInfo, 0, len(names))
	for _, name := range names {
		if strings.HasPrefix(filepath.Base(name), "cu.") {
			ports = append(ports, PortInfo{Name: name})
		}
	}
	return ports, nil
}
