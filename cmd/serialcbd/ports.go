package main

import (
	"encoding/json"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/serialcbd/serialcbd/serialcb"
)

func newPortsCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "ports",
		Short: "List the serial ports present, with USB VID:PID and serial number where the system tells them",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			ports, err := serialcb.ListPorts()
			if err != nil {
				return fmt.Errorf("list ports: %w", err)
			}
			if asJSON {
				if ports == nil {
					ports = []serialcb.PortInfo{}
				}
				enc := json.NewEncoder(g.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(ports)
			}
			if len(ports) == 0 {
				printf(g.stdout, "no serial ports found (%s; try `serialcbd demo` to run without hardware)\n", serialcb.PortNamesHint)
				return nil
			}
			w := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "PORT\tUSB\tSERIAL\tPRODUCT\tBY-ID")
			for _, p := range ports {
				usb := "-"
				if p.IsUSB {
					usb = p.VID + ":" + p.PID
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", p.Name, usb, dash(p.SerialNumber), dash(p.Product), dash(p.ByID))
			}
			if err := w.Flush(); err != nil {
				return err
			}
			if !serialcb.USBDetails {
				printf(g.stderr, "USB details (VID:PID, serial number, product) need a build with cgo on this system; the devices above are all present\n")
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
