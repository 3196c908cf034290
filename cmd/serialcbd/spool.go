package main

import (
	"github.com/spf13/cobra"

	"github.com/serialcbd/serialcbd/configs"
	"github.com/serialcbd/serialcbd/dispatch/spool/admin"
)

// spoolCmdFlags are the flags of every `serialcbd spool` command.
type spoolCmdFlags struct {
	stateDir string
	config   string
	sink     string
	json     bool
	limit    int
	yes      bool
	dead     bool
}

// newSpoolCmd is `serialcbd spool`: look into the sinks' spools and dead
// letters, replay dead letters, purge.
func newSpoolCmd(g *globals) *cobra.Command {
	var fl spoolCmdFlags
	cmd := &cobra.Command{
		Use:   "spool (stats | dead list | dead replay | purge)",
		Short: "Inspect the sinks' spools and dead letters; replay or purge them",
		Long: `Each sink keeps what it has not delivered yet in its spool, and what it will
never take (rejected, or out of attempts) in its dead-letter file, under the
state directory:

  <state_dir>/<sink>/spool/       frames waiting for the sink
  <state_dir>/<sink>/dead.jsonl   dead letters, one JSON object per line

The state directory is --state-dir, else the state_dir of --config FILE,
else ./serialcbd-state (relative to the current directory, as for run).
stats and dead list only read, and work while serialcbd runs. dead replay and
purge change the spool: they need serialcbd stopped (it holds the spool's lock).`,
		Args: opNoSubcommand,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	pf := cmd.PersistentFlags()
	pf.StringVar(&fl.stateDir, "state-dir", "", "the daemon's state directory (default: the config's state_dir, else "+configs.DefaultStateDir+")")
	pf.StringVarP(&fl.config, "config", "c", "", "take the state directory from this config file's state_dir")

	stats := &cobra.Command{
		Use:   "stats [--state-dir DIR | --config FILE] [--json]",
		Short: "Frames waiting, bytes, oldest frame and dead letters, per sink",
		Long: `stats shows, for every sink under the state directory: the frames waiting in
its spool, the spool's bytes and segment files, the oldest waiting frame's
received_at and age, and the number of dead letters. It reads the files
without locking them, so it works while serialcbd runs; a frame being
written at that moment may be missed.`,
		Example: `  serialcbd spool stats --state-dir /var/lib/serialcbd
  serialcbd spool stats --json`,
		Args: opNoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := fl.resolveStateDir(); err != nil {
				return err
			}
			return fl.tool(cmd, g).Stats()
		},
	}
	stats.Flags().BoolVar(&fl.json, "json", false, "print one JSON object")

	dead := &cobra.Command{
		Use:   "dead (list | replay)",
		Short: "List dead letters, or move them back into their sink's spool",
		Args:  opNoSubcommand,
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	list := &cobra.Command{
		Use:   "list [--sink NAME] [--json] [--limit N]",
		Short: "One line per dead letter: when, sink, port, seq, id, attempts, error, payload",
		Long: `list prints the dead letters of every sink (or of --sink NAME) in the order
they died. The payload is shown as quoted text when it is mostly printable,
else as hex, truncated. With --json each letter is printed as stored: one
JSON object per line, with the whole frame. Damaged lines (a torn last line
after a crash) are reported on stderr with their line numbers and skipped.`,
		Example: `  serialcbd spool dead list --sink api --limit 20
  serialcbd spool dead list --json | jq .error`,
		Args: opNoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := fl.resolveStateDir(); err != nil {
				return err
			}
			return fl.tool(cmd, g).DeadList()
		},
	}
	lf := list.Flags()
	lf.StringVar(&fl.sink, "sink", "", "only this sink's dead letters")
	lf.BoolVar(&fl.json, "json", false, "print the letters as stored, one JSON object per line")
	lf.IntVar(&fl.limit, "limit", 0, "print at most N letters (0: all)")

	replay := &cobra.Command{
		Use:   "replay --sink NAME [--yes]",
		Short: "Move a sink's dead letters back into its spool, to be delivered again",
		Long: `replay appends the sink's dead letters to its spool (fsynced), then deletes
its dead-letter file, so serialcbd delivers them again when it next starts.
If interrupted, a letter may end up in both places; delivering it twice is
harmless, since sinks deduplicate on the frame id. Damaged lines are kept in
dead.jsonl.damaged. serialcbd must be stopped: it holds the spool's lock.
It asks for confirmation on a terminal; elsewhere pass --yes.`,
		Example: `  systemctl stop serialcbd
  serialcbd spool dead replay --sink api --yes
  systemctl start serialcbd`,
		Args: opNoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := fl.resolveStateDir(); err != nil {
				return err
			}
			t, err := fl.lockingTool(cmd, g)
			if err != nil {
				return err
			}
			return t.DeadReplay()
		},
	}
	replay.Flags().StringVar(&fl.sink, "sink", "", "the sink whose dead letters to replay (required)")
	replay.Flags().BoolVarP(&fl.yes, "yes", "y", false, "do not ask for confirmation")
	dead.AddCommand(list, replay)

	purge := &cobra.Command{
		Use:   "purge --sink NAME [--dead] [--yes]",
		Short: "Delete a sink's spooled frames (or, with --dead, its dead letters)",
		Long: `purge deletes every frame waiting in the sink's spool, or with --dead every
dead letter of the sink, after saying how many will be lost. They are never
delivered. serialcbd must be stopped: it holds the spool's lock. It asks for
confirmation on a terminal; elsewhere pass --yes.`,
		Example: `  serialcbd spool purge --sink api
  serialcbd spool purge --sink api --dead --yes`,
		Args: opNoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := fl.resolveStateDir(); err != nil {
				return err
			}
			t, err := fl.lockingTool(cmd, g)
			if err != nil {
				return err
			}
			return t.Purge()
		},
	}
	purge.Flags().StringVar(&fl.sink, "sink", "", "the sink to purge (required)")
	purge.Flags().BoolVar(&fl.dead, "dead", false, "delete the dead letters instead of the spooled frames")
	purge.Flags().BoolVarP(&fl.yes, "yes", "y", false, "do not ask for confirmation")

	cmd.AddCommand(stats, dead, purge)
	return cmd
}

// resolveStateDir sets stateDir from --state-dir, else from the config
// file's state_dir, else to the default.
func (fl *spoolCmdFlags) resolveStateDir() error {
	switch {
	case fl.stateDir != "" && fl.config != "":
		return usagef("--state-dir and --config exclude each other")
	case fl.stateDir != "":
	case fl.config != "":
		cfg, err := configs.Load(fl.config)
		if err != nil {
			return err
		}
		if cfg.StateDir == "" {
			return usagef("%s sets an empty state_dir: no spools to look at", fl.config)
		}
		fl.stateDir = cfg.StateDir
	default:
		fl.stateDir = configs.DefaultStateDir
	}
	return nil
}

// opNoSubcommand makes an unknown subcommand a usage error (exit 2).
func opNoSubcommand(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("unknown command %q for %q (see %s --help)", args[0], cmd.CommandPath(), cmd.CommandPath())
	}
	return nil
}

// opNoArgs makes an argument to a command that takes none a usage error.
func opNoArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("unexpected argument %q (see %s --help)", args[0], cmd.CommandPath())
	}
	return nil
}

// tool is the spool tool with this command's flags and streams.
func (fl *spoolCmdFlags) tool(cmd *cobra.Command, _ *globals) *admin.Tool {
	return &admin.Tool{StateDir: fl.stateDir, Sink: fl.sink, JSON: fl.json, Limit: fl.limit, Yes: fl.yes, Dead: fl.dead,
		In: cmd.InOrStdin(), Out: cmd.OutOrStdout(), Err: cmd.ErrOrStderr()}
}

// lockingTool is tool with the logger of the spool it opens.
func (fl *spoolCmdFlags) lockingTool(cmd *cobra.Command, g *globals) (*admin.Tool, error) {
	log, err := g.newLogger("warn", "")
	if err != nil {
		return nil, err
	}
	t := fl.tool(cmd, g)
	t.Log = log
	return t, nil
}
