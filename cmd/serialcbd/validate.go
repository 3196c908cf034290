package main

import (
	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/serialcbd/serialcbd/configs"
	"github.com/serialcbd/serialcbd/dispatch/daemon"
)

func newValidateCmd(g *globals) *cobra.Command {
	var file string
	var example bool
	cmd := &cobra.Command{
		Use:   "validate --config FILE",
		Short: "Check a config file without opening any port or sink",
		Long: `validate reads the config strictly (an unknown key is an error with its line and
the closest valid key), expands ${ENV} values, and checks every port setting,
framing spec and sink spec. It opens no port, file, database or connection.
Exit status: 0 valid, 2 invalid.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if example {
				_, err := g.stdout.Write(configs.Example())
				return err
			}
			if file == "" {
				return usagef("give --config FILE (or --example to print a commented example)")
			}
			cfg, err := configs.Load(file)
			if err != nil {
				return err
			}
			d, err := daemon.New(cfg, zap.NewNop(), daemon.Options{})
			if err != nil {
				return err
			}
			if err := d.Close(); err != nil {
				return err
			}
			printf(g.stdout, "%s: ok (%d ports, %d sinks, %d routes)\n", file, len(cfg.Ports), len(cfg.Sinks), len(cfg.Routes))
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "config", "c", "", "config file to check")
	cmd.Flags().BoolVar(&example, "example", false, "print the commented example config and exit")
	return cmd
}
