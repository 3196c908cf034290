// Package monitor is the logic behind `serialcbd monitor`: it reads a
// serial port, or a recorded capture, through a serialcb.Framer and prints
// one line per frame (time, sequence number, length, checksum verdict,
// payload as quoted text or hex) and, with a decoder, the fields it finds;
// then a summary line. With Options.Guess it reads a sample instead and
// lists the framings and checksums that explain most of its bytes
// (serialcb.GuessFraming), best first, with a suggestion.
//
//	monitor.go  Options, Run, UsageError; the port and the file; a frame's line
//	guess.go    Guess: the sample, from a file or a port with its silences
//
// Nothing is delivered anywhere: it imports serialcb and serialcb/decode
// only, not the event loop or the dispatcher.
package monitor
