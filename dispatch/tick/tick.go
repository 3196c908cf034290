// Package tick aligns the timers of periodic background work to a shared
// grid, so that work of different parts due in the same period runs in one
// wake-up of the process.
//
// At the rates serial devices send (1 to 200 frames a second) the per-second
// work — the spool's fsync, a lane's linger batch, SQLite's checkpoint —
// costs more in wake-ups than in work: each timer that fires on an idle
// process wakes a thread, and Go's sysmon thread, which then polls every
// 20 µs until the process is idle again. Timers armed at different moments
// fire at different moments. Timers that end on multiples of their period
// (counted from the zero time, as time.Time.Truncate does) fire together
// whenever their periods share multiples: 1 s and 1 s always, 1 s and 5 s
// every 5 s.
package tick

import "time"

// Until returns how long from now until the next multiple of period: more
// than 0 and at most period. Work armed with it runs at most period after
// it was armed, as it would with period itself, and at most once a period.
// A period of 0 or less is returned as is.
func Until(now time.Time, period time.Duration) time.Duration {
	if period <= 0 {
		return period
	}
	// Truncate drops the monotonic reading, so both times are wall times;
	// a step of the wall clock only shortens or lengthens one wait, which
	// the clamp keeps within (0, period].
	d := now.Truncate(period).Add(period).Sub(now)
	if d <= 0 || d > period {
		return period
	}
	return d
}
