// Command lifecycle measures keystone agent against what a user would do by
// hand, in one run, on the same guest: start → first SSH command, exec round
// trips, list/status with many sandboxes, and how many idle sandboxes fit.
// It prints medians and ratios; docs/benchmarks.md records the results.
// Numbers are never asserted: a target that is missed is reported as such.
//
//	go run ./bench/lifecycle [-runner DIR] [-boots 5] [-execs 20] [-scale 8]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"runtime"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/keystone-agent/keystone/bench/measure"
	"github.com/keystone-agent/keystone/internal/testguest"
)

func main() {
	runnerDir := flag.String("runner", "", "runner directory (default: build the Debian test guest)")
	boots := flag.Int("boots", 5, "boots per start measurement")
	execs := flag.Int("execs", 20, "exec round trips per measurement")
	listN := flag.Int("sandboxes", 100, "registered sandboxes for list/status")
	scale := flag.Int("scale", 0, "idle 512 MB sandboxes to start for the scale measurement (0: skip)")
	flag.Parse()
	if err := run(*runnerDir, *boots, *execs, *listN, *scale); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

type row struct {
	metric, ours, base, ratio, target string
}

func run(runnerDir string, boots, execs, listN, scale int) (err error) {
	ctx := context.Background()
	if runnerDir == "" {
		var err error
		if runnerDir, err = testguest.Build(ctx, testguest.Options{}); err != nil {
			return err
		}
	}
	b, err := newBench(runnerDir)
	if err != nil {
		return err
	}
	defer b.cleanup()
	defer func() {
		if err != nil {
			b.showLogs()
		}
	}()
	var rows []row

	st, err := b.startToSSH(boots)
	if err != nil {
		return err
	}
	rows = append(rows, row{"start → first SSH command (cold, first start)", measure.MS(st.cold), "", "", ""})
	if boots > 0 {
		rows = append(rows,
			ratioRow("start → first SSH command (restart)", st.restart, st.raw, "≤ 1.2×"),
			row{"first exec after start", measure.MS(st.firstExec), "", "", ""},
			row{"start → first command, after dropbear listened (same boot)", measure.MS(st.afterListen), "", "", "≤ 150 ms"},
		)
	}
	rawListen := phaseRows(&rows, "raw runner", b.phases)
	phaseRows(&rows, "keystone start", b.ksPhases)
	if rawListen != 0 {
		rows = append(rows, row{"start → first command, after the raw boot's dropbear listened", measure.MS(st.restart - rawListen), "", "", "≤ 150 ms"})
	}
	ours, fresh, master, masterSame, err := b.execRoundTrip(execs)
	if err != nil {
		return err
	}
	rows = append(rows,
		ratioRow(fmt.Sprintf("exec -- true vs ssh ControlMaster client (median of %d)", execs), ours, master, "≤ 1.0×, ≤ 120 ms"),
		ratioRow(fmt.Sprintf("exec -- true vs ssh ControlMaster client, exec's command line (median of %d)", execs), ours, masterSame, ""),
		ratioRow(fmt.Sprintf("exec -- true vs new ssh connection (median of %d)", execs), ours, fresh, ""),
	)
	list, status, rss, err := b.listStatus(listN, execs)
	if err != nil {
		return err
	}
	rows = append(rows,
		row{fmt.Sprintf("list --json, %d sandboxes", listN), measure.MS(list), "", "", "≤ 50 ms"},
		row{fmt.Sprintf("status --json, %d sandboxes", listN), measure.MS(status), "", "", "≤ 50 ms"},
		row{"helper peak RSS (list)", fmt.Sprintf("%.1f MB", float64(rss)/1024), "", "", ""},
	)
	if scale > 0 {
		srows, err := b.scale(scale)
		if err != nil {
			return err
		}
		rows = append(rows, srows...)
	}
	fmt.Printf("machine: %s, %d CPUs, %s; accelerator: %s\n", hostname(), runtime.NumCPU(), kernel(), accel())
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "metric\tkeystone\tbaseline\tratio\ttarget")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.metric, r.ours, r.base, r.ratio, r.target)
	}
	return tw.Flush()
}

// phaseRows adds the median of each boot phase and returns dropbear's.
func phaseRows(rows *[]row, of string, boots [][]time.Duration) time.Duration {
	var listened time.Duration
	for i, ph := range phaseMarks {
		var ds []time.Duration
		for _, boot := range boots {
			if boot[i] != 0 {
				ds = append(ds, boot[i])
			}
		}
		if len(ds) > 0 {
			*rows = append(*rows, row{"boot phase (" + of + "): " + ph.name, measure.MS(measure.Median(ds)), "", "", ""})
			if i == listening {
				listened = measure.Median(ds)
			}
		}
	}
	return listened
}

func ratioRow(metric string, ours, base time.Duration, target string) row {
	return row{metric, measure.MS(ours), measure.MS(base), fmt.Sprintf("%.2f×", float64(ours)/float64(base)), target}
}

func hostname() string { h, _ := os.Hostname(); return h }

func kernel() string {
	var u syscall.Utsname
	if syscall.Uname(&u) != nil {
		return "?"
	}
	var b strings.Builder
	for _, c := range u.Release {
		if c == 0 {
			break
		}
		b.WriteByte(byte(c))
	}
	return "Linux " + b.String()
}

// accel says what the test guest's runner will pick, by the same rule.
func accel() string {
	if _, err := os.Stat("/sys/module/kvm_pvm"); err == nil {
		return "tcg (kvm_pvm present: software nested virtualisation)"
	}
	if f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0); err == nil {
		f.Close()
		return "kvm"
	}
	return "tcg (no usable /dev/kvm)"
}
