// Package measure holds what the benchmark programs share to time things
// and print them: a timer, the median and the millisecond format of their
// tables. Numbers are printed, never asserted.
package measure

import (
	"fmt"
	"sort"
	"time"
)

// Time runs f and returns how long it took.
func Time(f func() error) (time.Duration, error) {
	t := time.Now()
	err := f()
	return time.Since(t), err
}

// Median returns the median of ds (the upper one of an even count), 0 for none.
func Median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0 // nothing measured (e.g. -boots 0)
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// MS formats d as whole milliseconds, as the tables print them.
func MS(d time.Duration) string { return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond)) }
