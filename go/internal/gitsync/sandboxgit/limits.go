package sandboxgit

// What a sync reads from a sandbox is bounded by these limits (docs/sync.md,
// "Limits"). A repository over one of them is refused with a *LimitError, and
// nothing of the host changes.
const (
	// MaxBlobSize bounds one file's content. Blobs are streamed, never held
	// whole in memory by keystone; this bounds the host's disk use per file
	// and the memory the host's git needs to rebuild one from a delta.
	MaxBlobSize = 1 << 30
	// MaxMetaSize bounds one commit, tree or tag: they are read whole into
	// memory, to be hashed, checked and walked.
	MaxMetaSize = 64 << 20
	// MaxResolveSize bounds a blob that must be rebuilt in memory from a delta
	// (its delta base does not travel and the host lacks it).
	MaxResolveSize = 256 << 20
	// MaxDeltaDepth bounds a chain of deltas (git writes at most 4095).
	MaxDeltaDepth = 5000
	// MaxRefFile bounds a loose ref file, HEAD and the like.
	MaxRefFile = 4 << 10
	// MaxPackedRefs bounds the packed-refs file.
	MaxPackedRefs = 64 << 20
	// MaxBranches bounds the number of branches.
	MaxBranches = 100_000
	// MaxConfigSize bounds .git/config, read for the repository format only.
	MaxConfigSize = 1 << 20
	// MaxIndexSize bounds one pack index file (.idx), read whole.
	MaxIndexSize = 1 << 30
	// MaxPacks bounds the number of packs in objects/pack.
	MaxPacks = 10_000
	// MaxPathLength bounds a path in the tree (Linux's PATH_MAX): no longer
	// one can be checked out here, and the walk keeps the path of every
	// tree it reads, so long names nested deep would add up quadratically.
	MaxPathLength = 4096
)

// baseCacheBytes is the memory kept for delta bases already rebuilt: a chain
// read newest first would otherwise rebuild every base again for each object.
const baseCacheBytes = 32 << 20
