//go:build !darwin || cgo

package serialcb

import (
	"os"
	"path/filepath"
	"slices"

	"go.bug.st/serial"
	"go.bug.st/serial/enumerator"
)

// USBDetails is true when ListPorts can tell USB ports apart and read their
// VID, PID, serial number and product: on Linux and Windows always, on macOS
// in a cgo build (the enumerator asks IOKit there).
const USBDetails = true

func listPorts() ([]PortInfo, error) {
	details, err := enumerator.GetDetailedPortsList()
	if err != nil {
		return nil, err
	}
	// The enumerator returns an empty Name for a port without a sysfs
	// device entry; its order is that of GetPortsList, so borrow the name.
	var names []string
	if slices.ContainsFunc(details, func(d *enumerator.PortDetails) bool { return d.Name == "" }) {
		names, _ = serial.GetPortsList()
	}
	byID := serialByID()
	ports := make([]PortInfo, 0, len(details))
	for i, d := range details {
		name := d.Name
		if name == "" {
			if len(names) != len(details) {
				continue
			}
			name = names[i]
		}
		ports = append(ports, PortInfo{
			Name:         name,
			ByID:         byID[name],
			IsUSB:        d.IsUSB,
			VID:          d.VID,
			PID:          d.PID,
			SerialNumber: d.SerialNumber,
			Product:      d.Product,
		})
	}
	return ports, nil
}

// serialByID maps device paths to their udev /dev/serial/by-id/ links.
func serialByID() map[string]string {
	const dir = "/dev/serial/by-id"
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil // no udev, no USB serial device, or not Linux
	}
	m := make(map[string]string, len(entries))
	for _, e := range entries {
		link := filepath.Join(dir, e.Name())
		if target, err := filepath.EvalSymlinks(link); err == nil {
			m[target] = link
		}
	}
	return m
}
