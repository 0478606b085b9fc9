// Command sync measures `keystone agent sync` (gitsync.Sync) against the git CLI
// doing the same job (`git fetch <workspace>` + `git merge --ff-only`, which
// prints the same diffstat keystone reports) on the same
// repositories in the same run, and prints the medians, the ratios and the peak
// RSS of both sides. git runs twice: as it comes, and with
// transfer.fsckObjects=true, which checks what it receives as keystone always
// does (index-pack --strict), the fair baseline for a workspace not trusted.
//
//	cd go && go run ./bench/sync [-n 5] [-only REGEXP] [-history REPO] [-keep] [-cpuprofile FILE]
//
// Scenarios: 1, 100, 1000 (loose and packed) and 10,000 (packed) new commits in
// the workspace, a 50 MB history, one 200 MB file, and, with -history, a real
// history: REPO (any local clone, e.g. of nixpkgs.lib) cloned as the host and
// reset 200 first-parent commits back, the workspace fast-forwarded to its tip.
// Each run starts from a fresh copy of the host repository (the copy is not
// timed, and is flushed to disk first), so every run transfers the same
// objects. Each side runs as processes of its own, so their peak RSS can be
// read from the kernel: keystone's sync runs in a child (this program,
// re-executed) and its own peak is reported apart from that of its process
// tree (with git index-pack and merge).
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/keystone-agent/keystone/internal/gitsync"
)

func main() {
	n := flag.Int("n", 5, "runs per scenario and tool (the median is reported)")
	keep := flag.Bool("keep", false, "keep the scratch directory")
	only := flag.String("only", "", "run only scenarios whose name matches this regular expression")
	history := flag.String("history", "", "a local git repository for the real-history row")
	child := flag.Bool("child", false, "internal: run one sync (host, workspace as arguments) and report")
	pending := flag.Bool("pending", false, "internal, with -child: count the pending commits instead")
	launch := flag.Bool("launch", false, "internal: run the command given as arguments and report its usage")
	flag.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of keystone's syncs (or, with -child -pending, of the count) to this file (the last run's)")
	flag.Parse()
	if *child {
		os.Exit(runChild(flag.Args(), *pending))
	}
	if *launch {
		os.Exit(runLaunch(flag.Args()))
	}
	if err := run(*n, *keep, *only, *history); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// A scenario's commits are made with `git commit` (loose objects, as an agent
// leaves them), or with fast-import (one pack), optionally unpacked into loose
// objects again: git only packs a repository at 6700 loose objects.
type scenario struct {
	name    string
	commits int
	size    int // bytes of new content per commit
	commit  bool
	unpack  bool
}

var scenarios = []scenario{
	{"1 commit", 1, 2 << 10, true, false},
	{"100 commits", 100, 2 << 10, true, false},
	{"1000 commits (loose)", 1000, 2 << 10, false, true},
	{"1000 commits (packed)", 1000, 2 << 10, false, false},
	{"10000 commits (packed)", 10000, 2 << 10, false, false},
	{"50 MB history (100 commits x 512 KB, packed)", 100, 512 << 10, false, false},
	{"one 200 MB file (1 commit, loose)", 1, 200 << 20, true, false},
}

// cpuProfile is where a keystone child writes its CPU profile ("": none).
var cpuProfile string

// childReport is what a keystone child prints.
type childReport struct {
	Commits int           `json:"commits"`
	SelfRSS int64         `json:"selfRSS"` // KB, this process only
	SelfCPU time.Duration `json:"selfCPU"` // user + system, this process only (no git)
	// With -pending: the count of gitsync.Pending and how long it took, in-process.
	Pending     int           `json:"pending"`
	PendingTime time.Duration `json:"pendingTime"`
}

// runChild is `-child [-pending] host workspace`: one sync, as `keystone agent
// sync` runs it, or with -pending the count `keystone agent status` shows.
func runChild(args []string, pending bool) int {
	o := gitsync.Options{Name: "bench", HostRepo: args[0], Workspace: args[1]}
	var rep childReport
	var err error
	if cpuProfile != "" {
		stop, perr := startProfile(cpuProfile)
		if perr != nil {
			fmt.Fprintln(os.Stderr, perr)
			return 1
		}
		defer stop()
	}
	if pending {
		t0 := time.Now()
		rep.Pending, err = gitsync.Pending(context.Background(), o)
		rep.PendingTime = time.Since(t0)
	} else {
		var r *gitsync.Report
		if r, err = gitsync.Sync(context.Background(), o); err == nil {
			rep.Commits = len(r.Commits)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	rep.SelfRSS = ru.Maxrss
	rep.SelfCPU = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	json.NewEncoder(os.Stdout).Encode(rep)
	return 0
}

// startProfile starts a CPU profile into path and returns what stops it.
func startProfile(path string) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

// runLaunch runs a command and prints, after its output, a line with its
// resource usage. The kernel's peak RSS of a process started from a parent
// that shares its memory until exec (Go's os/exec) starts at the parent's own
// peak: this small launcher keeps the bench's memory (its repositories, made
// in memory) out of what is measured.
func runLaunch(args []string) int {
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	fmt.Printf("\nusage %d %d\n", ru.Maxrss, ru.Utime.Nano()+ru.Stime.Nano())
	return 0
}

func run(n int, keep bool, only, history string) error {
	onlyRe, err := regexp.Compile(only)
	if err != nil {
		return fmt.Errorf("-only: %w", err)
	}
	gitBin, err := gitsync.TrustedGit()
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	scratch, err := os.MkdirTemp("", "keystone-bench-sync-")
	if err != nil {
		return err
	}
	if keep {
		fmt.Fprintln(os.Stderr, "scratch:", scratch)
	} else {
		defer os.RemoveAll(scratch)
	}
	isolateGit(scratch)
	out := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(out, "scenario\tobjects MB\tgit wall\tgit+fsck wall\tkeystone wall\tratio\tratio to git+fsck\tgit CPU\tkeystone CPU\tratio\tkeystone own CPU\tgit peak RSS\tkeystone peak RSS\tkeystone own RSS\tpending count\t\n")
	list := scenarios
	if history != "" {
		list = append(list, scenario{name: "real history: " + filepath.Base(history) + ", 200 first-parent commits"})
	}
	for i, sc := range list {
		if !onlyRe.MatchString(sc.name) {
			continue
		}
		dir := filepath.Join(scratch, fmt.Sprint(i))
		var host, ws string
		var mb float64
		if sc.commits == 0 {
			host, ws, err = prepareHistory(gitBin, dir, history)
		} else {
			host, ws, mb, err = prepare(gitBin, dir, sc)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", sc.name, err)
		}
		want, err := countRange(gitBin, host, ws)
		if err != nil {
			return err
		}
		launch := func(args ...string) *exec.Cmd {
			return exec.Command(self, append([]string{"-launch", "--"}, args...)...)
		}
		gitRun := func(fsck bool) func(copyDir string) (sample, error) {
			return func(copyDir string) (sample, error) {
				var s sample
				args := []string{gitBin, "-C", copyDir}
				if fsck {
					args = append(args, "-c", "transfer.fsckObjects=true")
				}
				if _, err := s.add(launch(append(args, "fetch", "--quiet", "--no-tags", ws, "+refs/heads/*:refs/remotes/ws/*")...)); err != nil {
					return s, err
				}
				// Not --quiet: git prints the diffstat (files changed, insertions,
				// deletions) as keystone's report does, and counts it as keystone does.
				_, err := s.add(launch(gitBin, "-C", copyDir, "merge", "--ff-only", "refs/remotes/ws/"+branch(gitBin, ws)))
				return s, err
			}
		}
		ourRun := func(copyDir string) (sample, error) {
			var s, p sample
			var rep, pend childReport
			out, err := p.add(launch(self, "-child", "-pending", copyDir, ws)) // not timed with the sync
			if err == nil {
				err = json.Unmarshal([]byte(out), &pend)
			}
			if err == nil {
				out, err = s.add(launch(self, "-child", "-cpuprofile="+cpuProfile, copyDir, ws))
			}
			if err == nil {
				err = json.Unmarshal([]byte(out), &rep)
			}
			if err == nil && (rep.Commits != want || pend.Pending != want) {
				err = fmt.Errorf("synced %d commits (pending said %d), want %d", rep.Commits, pend.Pending, want)
			}
			s.selfRSS, s.selfCPU, s.pending = rep.SelfRSS, rep.SelfCPU, pend.PendingTime
			return s, err
		}
		res, err := measure(n, dir, host, gitRun(false), gitRun(true), ourRun)
		if err != nil {
			return fmt.Errorf("%s: %w", sc.name, err)
		}
		g, f, k := res[0], res[1], res[2]
		fmt.Fprintf(out, "%s\t%.1f\t%v\t%v\t%v\t%.2f\t%.2f\t%v\t%v\t%.2f\t%v\t%s\t%s\t%s\t%v\t\n", sc.name, mb,
			ms(g.wall), ms(f.wall), ms(k.wall), float64(k.wall)/float64(g.wall), float64(k.wall)/float64(f.wall),
			ms(g.cpu), ms(k.cpu), float64(k.cpu)/float64(g.cpu), ms(k.selfCPU),
			mib(g.rss), mib(k.rss), mib(k.selfRSS), ms(k.pending))
		fmt.Fprintf(os.Stderr, "done: %s\n", sc.name)
	}
	out.Flush()
	fmt.Printf("\nmedian of %d runs each; %s, %d CPUs, %s, %s\n", n, runtime.GOOS+"/"+runtime.GOARCH, runtime.NumCPU(), runtime.Version(), gitVersion(gitBin))
	return nil
}

func ms(d time.Duration) time.Duration { return d.Round(time.Millisecond / 10) }

func mib(kb int64) string { return fmt.Sprintf("%.0f MB", float64(kb)/1024) }

// sample is one run of one side: wall time, CPU (user + system) and the peak
// RSS of its process trees (the kernel's maxrss of a waited child includes its
// own waited children), and for keystone its own peak and the pending count's time.
type sample struct {
	wall, cpu time.Duration
	rss       int64 // KB
	selfRSS   int64 // KB
	selfCPU   time.Duration
	pending   time.Duration
}

// add runs a launcher command (see runLaunch), adds its usage to s and returns
// what the command printed.
func (s *sample) add(cmd *exec.Cmd) (string, error) {
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	t0 := time.Now()
	err := cmd.Run()
	s.wall += time.Since(t0)
	if err != nil {
		return "", fmt.Errorf("%s: %v: %s", strings.Join(cmd.Args, " "), err, stderr.String())
	}
	out, usage, _ := strings.Cut(stdout.String(), "\nusage ")
	var rss, cpu int64
	if _, err := fmt.Sscan(usage, &rss, &cpu); err != nil {
		return "", fmt.Errorf("%s: no usage reported", strings.Join(cmd.Args, " "))
	}
	s.cpu += time.Duration(cpu)
	s.rss = max(s.rss, rss)
	return out, nil
}

// isolateGit keeps the user's git configuration out of both tools' way.
func isolateGit(scratch string) {
	os.Setenv("HOME", scratch)
	os.Setenv("XDG_CONFIG_HOME", scratch)
	os.Setenv("GIT_CONFIG_NOSYSTEM", "1")
	for _, k := range []string{"GIT_AUTHOR_NAME", "GIT_COMMITTER_NAME"} {
		os.Setenv(k, "Bench")
	}
	for _, k := range []string{"GIT_AUTHOR_EMAIL", "GIT_COMMITTER_EMAIL"} {
		os.Setenv(k, "bench@example.com")
	}
}

func gitCmd(bin, dir string, args ...string) *exec.Cmd {
	return exec.Command(bin, append([]string{"-C", dir}, args...)...)
}

func git(bin, dir string, args ...string) error {
	if out, err := gitCmd(bin, dir, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("git %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

func gitOut(bin, dir string, args ...string) (string, error) {
	out, err := gitCmd(bin, dir, args...).Output()
	return strings.TrimSpace(string(out)), err
}

func branch(bin, ws string) string {
	b, _ := gitOut(bin, ws, "symbolic-ref", "--short", "HEAD")
	return b
}

// countRange is how many commits the workspace's branch has that the host's lacks.
func countRange(bin, host, ws string) (int, error) {
	h, err := gitOut(bin, host, "rev-parse", "HEAD")
	if err != nil {
		return 0, err
	}
	out, err := gitOut(bin, ws, "rev-list", "--count", "HEAD", "^"+h)
	if err != nil {
		return 0, err
	}
	var n int
	_, err = fmt.Sscan(out, &n)
	return n, err
}

func gitVersion(bin string) string {
	out, _ := exec.Command(bin, "version").Output()
	return strings.TrimSpace(string(out))
}

// prepare makes the host repository (a project of 300 files), clones it into a
// workspace with gitsync.Clone, and adds the scenario's commits to the workspace.
func prepare(gitBin, dir string, sc scenario) (host, ws string, mb float64, err error) {
	host, ws = filepath.Join(dir, "host"), filepath.Join(dir, "ws")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", 0, err
	}
	if err := git(gitBin, dir, "init", "-q", "-b", "main", host); err != nil {
		return "", "", 0, err
	}
	rng := rand.New(rand.NewSource(int64(sc.commits)))
	for i := 0; i < 300; i++ {
		p := filepath.Join(host, "src", fmt.Sprintf("pkg%d", i%20), fmt.Sprintf("file%d.go", i))
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, text(rng, 4<<10), 0o644)
	}
	if err := git(gitBin, host, "add", "-A"); err != nil {
		return "", "", 0, err
	}
	if err := git(gitBin, host, "commit", "-q", "-m", "project"); err != nil {
		return "", "", 0, err
	}
	if err := gitsync.Clone(context.Background(), host, ws); err != nil {
		return "", "", 0, err
	}
	if sc.commit {
		for i := 0; i < sc.commits; i++ {
			p := filepath.Join(ws, "agent", fmt.Sprintf("change%d.txt", i))
			os.MkdirAll(filepath.Dir(p), 0o755)
			if err := writeText(p, rng, sc.size); err != nil {
				return "", "", 0, err
			}
			if err := git(gitBin, ws, "add", "-A"); err != nil {
				return "", "", 0, err
			}
			if err := git(gitBin, ws, "commit", "-q", "-m", fmt.Sprintf("change %d", i)); err != nil {
				return "", "", 0, err
			}
		}
	} else if err := fastImport(gitBin, ws, rng, sc); err != nil {
		return "", "", 0, err
	}
	if sc.unpack {
		if err := unpack(gitBin, ws); err != nil {
			return "", "", 0, err
		}
	}
	return host, ws, float64(sc.commits*sc.size) / (1 << 20), nil
}

// prepareHistory makes the real-history row's repositories from repo: the host
// a clone reset 200 first-parent commits back with nothing else in it, the
// workspace keystone's clone of it fast-forwarded to repo's tip.
func prepareHistory(gitBin, dir, repo string) (host, ws string, err error) {
	host, ws = filepath.Join(dir, "host"), filepath.Join(dir, "ws")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", err
	}
	if err := git(gitBin, dir, "clone", "-q", "--no-local", repo, host); err != nil {
		return "", "", err
	}
	tip, err := gitOut(gitBin, host, "rev-parse", "HEAD")
	if err != nil {
		return "", "", err
	}
	for _, args := range [][]string{{"reset", "-q", "--hard", "HEAD~200"}, {"remote", "remove", "origin"},
		{"reflog", "expire", "--expire=now", "--all"}, {"gc", "-q", "--prune=now"}} {
		if err := git(gitBin, host, args...); err != nil {
			return "", "", err
		}
	}
	if err := gitsync.Clone(context.Background(), host, ws); err != nil {
		return "", "", err
	}
	if err := git(gitBin, ws, "fetch", "-q", repo, tip); err != nil {
		return "", "", err
	}
	return host, ws, git(gitBin, ws, "reset", "-q", "--hard", tip)
}

// fastImport appends sc.commits commits to the workspace's main in one pack,
// each adding a file and, when small, editing a shared one.
func fastImport(gitBin, ws string, rng *rand.Rand, sc scenario) error {
	cmd := exec.Command(gitBin, "-C", ws, "fast-import", "--quiet")
	in, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	w := bufio.NewWriter(in)
	log := []byte{}
	for i := 0; i < sc.commits; i++ {
		body := text(rng, sc.size)
		log = append(log, fmt.Sprintf("change %d\n", i)...)
		msg := fmt.Sprintf("change %d", i)
		fmt.Fprintf(w, "commit refs/heads/main\ncommitter Bench <bench@example.com> %d +0000\ndata %d\n%s\n", 1700000000+i, len(msg), msg)
		if i == 0 {
			fmt.Fprintf(w, "from refs/heads/main^0\n")
		}
		fmt.Fprintf(w, "M 100644 inline agent/change%d.txt\ndata %d\n%s\n", i, len(body), body)
		fmt.Fprintf(w, "M 100644 inline agent/LOG\ndata %d\n%s\n", len(log), log)
	}
	w.Flush()
	in.Close()
	if err := cmd.Wait(); err != nil {
		return err
	}
	return git(gitBin, ws, "reset", "-q", "--hard", "main")
}

// unpack turns the workspace's newest pack (fast-import's) into loose objects.
func unpack(gitBin, ws string) error {
	packs, _ := filepath.Glob(filepath.Join(ws, ".git", "objects", "pack", "pack-*.pack"))
	var newest string
	var newestTime time.Time
	for _, p := range packs {
		if fi, err := os.Stat(p); err == nil && fi.ModTime().After(newestTime) {
			newest, newestTime = p, fi.ModTime()
		}
	}
	moved := filepath.Join(filepath.Dir(ws), "fast-import.pack")
	if err := os.Rename(newest, moved); err != nil {
		return err
	}
	os.Remove(strings.TrimSuffix(newest, ".pack") + ".idx")
	os.Remove(strings.TrimSuffix(newest, ".pack") + ".rev")
	f, err := os.Open(moved)
	if err != nil {
		return err
	}
	defer f.Close()
	cmd := exec.Command(gitBin, "-C", ws, "unpack-objects", "-q")
	cmd.Stdin = f
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("unpack-objects: %v: %s", err, out)
	}
	return nil
}

// writeText writes n bytes of text to path, a MB at a time: the bench's own
// memory stays small (see runLaunch).
func writeText(path string, rng *rand.Rand, n int) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	for left := n; left > 0; left -= 1 << 20 {
		if _, err := f.Write(text(rng, min(left, 1<<20))); err != nil {
			f.Close()
			return err
		}
	}
	return f.Close()
}

// text is n bytes of random words: compressible like source, not trivially.
func text(rng *rand.Rand, n int) []byte {
	const letters = "abcdefghijklmnopqrstuvwxyz"
	b := make([]byte, n)
	for i := range b {
		switch r := rng.Intn(40); {
		case r == 0:
			b[i] = '\n'
		case r < 6:
			b[i] = ' '
		default:
			b[i] = letters[rng.Intn(len(letters))]
		}
	}
	return b
}

// measure runs each of fs n times, interleaved so that both tools see the same
// load, each time on a fresh copy of host, and returns the medians of each
// measure (peak RSS: the largest).
func measure(n int, dir, host string, fs ...func(copyDir string) (sample, error)) ([]sample, error) {
	runs := make([][]sample, len(fs))
	for i := 0; i < n; i++ {
		for j, f := range fs {
			c := filepath.Join(dir, fmt.Sprintf("copy%d", j))
			os.RemoveAll(c)
			if out, err := exec.Command("cp", "-a", host, c).CombinedOutput(); err != nil {
				return nil, fmt.Errorf("cp: %v: %s", err, out)
			}
			// The copy's (and the last run's removal's) dirty pages written
			// out first: both sides fsync their packs, which would otherwise
			// wait for them too.
			syscall.Sync()
			s, err := f(c)
			if err != nil {
				return nil, err
			}
			runs[j] = append(runs[j], s)
			os.RemoveAll(c)
		}
	}
	res := make([]sample, len(fs))
	for j, rs := range runs {
		pick := func(get func(sample) time.Duration) time.Duration {
			var ds []time.Duration
			for _, s := range rs {
				ds = append(ds, get(s))
			}
			slices.Sort(ds)
			return ds[len(ds)/2]
		}
		res[j].wall = pick(func(s sample) time.Duration { return s.wall })
		res[j].cpu = pick(func(s sample) time.Duration { return s.cpu })
		res[j].pending = pick(func(s sample) time.Duration { return s.pending })
		res[j].selfCPU = pick(func(s sample) time.Duration { return s.selfCPU })
		for _, s := range rs {
			res[j].rss, res[j].selfRSS = max(res[j].rss, s.rss), max(res[j].selfRSS, s.selfRSS)
		}
	}
	return res, nil
}
