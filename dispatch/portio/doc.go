// Package portio makes a serial port two-way: it polls devices that only
// answer (a request on a schedule, its reply matched to it) and carries
// writes from outside (brokers, HTTP) to the port, all on the central event
// loop. Every request is a future resolved with an Outcome.
//
// One request is outstanding per port at a time: the next waits for the
// reply or the timeout, as an RS-485 half-duplex bus needs. The port's
// Reader owns the device and writes between frames (serialcb.Reader.Write);
// its frame callback hands each frame to Port.OnFrame, which claims the
// reply of the outstanding request and lets every other frame flow on as
// unsolicited.
//
// Writes are at most once: a write is never retried, since writing twice
// could move a valve twice. Polls, which only read, are retried after a
// timeout or an invalid reply.
//
// Where things live:
//
//	portio.go    Config, New, Start, Stop, Stats: the Port and its limits' defaults
//	schedule.go  Poll: the schedules and their ticks
//	write.go     Write: a write's checks, rate limit and queue
//	request.go   one request at a time: send, reply timeout, retry, resolve
//	outcome.go   Outcome, Reply, and OnFrame, which claims a reply
//	http.go      the write endpoint, POST /ports/NAME/write
//	client.go    its client: WriteURL, PostWrite
package portio
