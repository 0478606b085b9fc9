// Command sync measures `keystone agent sync` (gitsync.Sync, in-process) against
// the git CLI doing the same job (`git fetch <workspace>` + `git merge --ff-only`)
// on the same repositories in the same run, and prints the medians and ratios.
//
//	cd go && go run ./bench/sync [-n 5] [-keep]
//
// Scenarios: 1, 100 and 1000 new commits in the workspace, and a ~50 MB history.
// Each run starts from a fresh copy of the host repository (the copy is not timed),
// so every run transfers the same objects.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
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
	only := flag.String("only", "", "run only scenarios whose name contains this")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the keystone runs to this file")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		profile = f
	}
	if err := run(*n, *keep, *only); err != nil {
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
	{"50 MB history (100 commits x 512 KB, packed)", 100, 512 << 10, false, false},
}

// profile receives the CPU profile of the keystone runs (-cpuprofile).
var profile *os.File

func run(n int, keep bool, only string) error {
	gitBin, err := gitsync.TrustedGit()
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
	fmt.Fprintf(out, "scenario\tobjects MB\tgit wall\tkeystone wall\tratio\tgit CPU\tkeystone CPU\tratio\t\n")
	for i, sc := range scenarios {
		if only != "" && !strings.Contains(sc.name, only) {
			continue
		}
		dir := filepath.Join(scratch, fmt.Sprint(i))
		host, ws, mb, err := prepare(gitBin, dir, sc)
		if err != nil {
			return fmt.Errorf("%s: %w", sc.name, err)
		}
		gitRun := func(copyDir string) error {
			if err := git(gitBin, copyDir, "fetch", "--quiet", "--no-tags", ws, "+refs/heads/*:refs/remotes/ws/*"); err != nil {
				return err
			}
			return git(gitBin, copyDir, "merge", "--ff-only", "--quiet", "refs/remotes/ws/main")
		}
		ourRun := func(copyDir string) error {
			if profile != nil {
				pprof.StartCPUProfile(profile)
				defer pprof.StopCPUProfile()
			}
			r, err := gitsync.Sync(context.Background(), gitsync.Options{Name: "bench", HostRepo: copyDir, Workspace: ws, Git: gitBin})
			if err == nil && len(r.Commits) != sc.commits {
				err = fmt.Errorf("synced %d commits, want %d", len(r.Commits), sc.commits)
			}
			return err
		}
		res, err := measure(n, dir, host, gitRun, ourRun)
		if err != nil {
			return fmt.Errorf("%s: %w", sc.name, err)
		}
		gitT, ourT := res[0].wall, res[1].wall
		fmt.Fprintf(out, "%s\t%.1f\t%v\t%v\t%.2f\t%v\t%v\t%.2f\t\n", sc.name, mb,
			gitT.Round(time.Millisecond/10), ourT.Round(time.Millisecond/10), float64(ourT)/float64(gitT),
			res[0].cpu.Round(time.Millisecond/10), res[1].cpu.Round(time.Millisecond/10), float64(res[1].cpu)/float64(res[0].cpu))
		fmt.Fprintf(os.Stderr, "done: %s\n", sc.name)
	}
	out.Flush()
	fmt.Printf("\nmedian of %d runs each; %s, %d CPUs, %s, %s\n", n, runtime.GOOS+"/"+runtime.GOARCH, runtime.NumCPU(), runtime.Version(), gitVersion(gitBin))
	return nil
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

func git(bin, dir string, args ...string) error {
	cmd := exec.Command(bin, append([]string{"-C", dir}, args...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("git %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return nil
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
			os.WriteFile(p, text(rng, sc.size), 0o644)
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

// fastImport appends sc.commits commits to the workspace's main in one pack,
// each adding a file and editing a shared one.
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

type result struct{ wall, cpu time.Duration }

// measure runs each of fs n times, interleaved so that both tools see the same
// load, each time on a fresh copy of host, and returns the medians of wall time
// and CPU time (user + system, this process and its children).
func measure(n int, dir, host string, fs ...func(copyDir string) error) ([]result, error) {
	walls := make([][]time.Duration, len(fs))
	cpus := make([][]time.Duration, len(fs))
	for i := 0; i < n; i++ {
		for j, f := range fs {
			c := filepath.Join(dir, fmt.Sprintf("copy%d", j))
			os.RemoveAll(c)
			if out, err := exec.Command("cp", "-a", host, c).CombinedOutput(); err != nil {
				return nil, fmt.Errorf("cp: %v: %s", err, out)
			}
			cpu0 := cpuTime()
			start := time.Now()
			if err := f(c); err != nil {
				return nil, err
			}
			walls[j] = append(walls[j], time.Since(start))
			cpus[j] = append(cpus[j], cpuTime()-cpu0)
			os.RemoveAll(c)
		}
	}
	res := make([]result, len(fs))
	for j := range fs {
		res[j] = result{median(walls[j]), median(cpus[j])}
	}
	return res, nil
}

func median(ds []time.Duration) time.Duration {
	slices.Sort(ds)
	return ds[len(ds)/2]
}

// cpuTime is the user and system time of this process and its waited-for children.
func cpuTime() time.Duration {
	var total time.Duration
	for _, who := range []int{syscall.RUSAGE_SELF, syscall.RUSAGE_CHILDREN} {
		var ru syscall.Rusage
		syscall.Getrusage(who, &ru)
		total += time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	return total
}
