//go:build !linux

package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// newBenchCmd: the benchmark needs the Linux pseudo-terminals behind vport.
func newBenchCmd(_ *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "bench",
		Short: "Measure the whole pipeline on virtual ports (Linux only)",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			return errors.New("bench needs Linux pseudo-terminals for its virtual ports")
		},
	}
}
