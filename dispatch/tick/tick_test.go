package tick

import (
	"testing"
	"time"
)

func TestUntil(t *testing.T) {
	base := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		now    time.Time
		period time.Duration
		want   time.Duration
	}{
		{base, time.Second, time.Second}, // on a multiple: a whole period, never 0
		{base.Add(time.Nanosecond), time.Second, time.Second - time.Nanosecond},
		{base.Add(300 * time.Millisecond), time.Second, 700 * time.Millisecond},
		{base.Add(999 * time.Millisecond), time.Second, time.Millisecond},
		{base.Add(1300 * time.Millisecond), 5 * time.Second, 3700 * time.Millisecond},
		{base.Add(120 * time.Millisecond), 250 * time.Millisecond, 130 * time.Millisecond},
		{base, 0, 0},
		{base, -time.Second, -time.Second},
	} {
		if got := Until(c.now, c.period); got != c.want {
			t.Errorf("Until(%s, %v) = %v, want %v", c.now.Format("15:04:05.000000000"), c.period, got, c.want)
		}
	}
}

// TestUntilAligns: timers of one period armed at different moments end
// together, and a 1 s timer ends with every 5 s one.
func TestUntilAligns(t *testing.T) {
	base := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	a := base.Add(120 * time.Millisecond)
	b := base.Add(870 * time.Millisecond)
	if ea, eb := a.Add(Until(a, time.Second)), b.Add(Until(b, time.Second)); !ea.Equal(eb) {
		t.Fatalf("1 s timers armed at %v and %v end at %v and %v", a, b, ea, eb)
	}
	c := base.Add(4200 * time.Millisecond)
	d := base.Add(1200 * time.Millisecond)
	if ec, ed := c.Add(Until(c, time.Second)), d.Add(Until(d, 5*time.Second)); !ec.Equal(ed) {
		t.Fatalf("1 s timer ends at %v, 5 s timer at %v", ec, ed)
	}
}

// A wall time carrying a monotonic reading (time.Now) gives the same wait.
func TestUntilMonotonic(t *testing.T) {
	now := time.Now()
	if got, want := Until(now, time.Second), Until(now.Round(0), time.Second); got != want {
		t.Fatalf("with monotonic reading %v, without %v", got, want)
	}
}
