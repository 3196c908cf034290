// Package admin is the tool behind `serialcbd spool`: it looks into the
// spools and dead-letter files that the daemon keeps per sink under its
// state directory (the layout of daemon.SpoolDir and
// daemon.DeadLetterPath), replays dead letters into their spool and purges
// either.
//
// Stats and DeadList only read, without locks, so they work while
// serialcbd runs. DeadReplay and Purge take the spool's lock, so they need
// serialcbd stopped, and ask for confirmation unless Tool.Yes.
//
//	admin.go  Tool, the sink checks, opening a spool, confirmation
//	stats.go  Stats
//	dead.go   DeadList, DeadReplay
//	purge.go  Purge
package admin
