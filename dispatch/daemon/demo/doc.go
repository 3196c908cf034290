// Package demo is the logic behind `serialcbd demo`: it creates three
// virtual serial ports in the process (pseudo-terminals), plays recorded
// device streams through two of them at a real baud rate (a GPS receiver's
// NMEA and an environment sensor's CSV), serves a simulated Modbus RTU
// meter on the third, and runs the same pipeline as `serialcbd run`
// (package daemon) into an SQLite database, with the meter polled every
// 200 ms. Run shows progress on a terminal and ends with a summary read
// back from the database.
//
//	demo.go     Options, Run: the ports, the pipeline, the replay, the wait
//	summary.go  the summary and the progress line's pieces
//
// The virtual ports need pseudo-terminals (Linux); elsewhere Run fails
// when it opens them.
package demo
