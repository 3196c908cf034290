// Package bench is the harness behind `serialcbd bench`: it creates
// virtual serial ports in the process, writes timestamped frames into them
// and measures two paths over the same ports: a plain reader (the ceiling
// the port allows) and the whole pipeline of package daemon (read loops,
// event loop, dispatcher, one sink). Run reports throughput, latency from
// the write to the sink's acknowledgement, CPU time and allocations per
// frame, and peak RSS, as a table or JSON.
//
//	bench.go      Options, Run, the report
//	raw.go        the writer and the plain reader
//	pipeline.go   the pipeline run and its acknowledgement recorder
//	sink.go       the sink under test (SQLite, an HTTP receiver, any spec)
//	histogram.go  the latency histogram
//	rusage_*.go   CPU time and peak RSS, per platform
//
// The virtual ports need Linux pseudo-terminals; elsewhere Run fails when
// it opens them.
package bench
