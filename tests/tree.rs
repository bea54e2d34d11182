//! One inclusion rule: the same repository read from disk (`sluice check`),
//! at a git revision (`sluice check --base`) and by the daemon's mirror gives
//! the same set, near-miss names, nested repositories, symbolic links and
//! file names that are not UTF-8 included.

use std::path::{Path, PathBuf};
use std::process::Command;

use sluice::reconcile::git::Mirror;
use sluice::tree::git::GitRepo;
use sluice::tree::{self, RepoSources, Traces, TreeError};

use crate::cli::{CORE, TOML, write_repo};

const TRACE: &str = r#"{"request": {"tool": "pay", "agent": "root", "session": "s"}, "expect": "deny", "code": "ROOT"}
"#;

/// A file name with a byte that is not UTF-8 (Latin-1 `é`).
#[cfg(unix)]
fn latin1(dir: &Path, before: &str, after: &str) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    let mut name = before.as_bytes().to_vec();
    name.push(0xe9);
    name.extend_from_slice(after.as_bytes());
    dir.join(std::ffi::OsStr::from_bytes(&name))
}

/// Stages every file of the working tree and commits it on HEAD, and points
/// `main` at it (the branch the daemon watches).
fn commit_all(repo: &git2::Repository, message: &str) -> String {
    let mut index = repo.index().unwrap();
    index
        .add_all(["*"], git2::IndexAddOption::DEFAULT, None)
        .unwrap();
    index.update_all(["*"], None).unwrap();
    index.write().unwrap();
    let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
    let sig =
        git2::Signature::new("t", "t@example.com", &git2::Time::new(1_767_225_600, 0)).unwrap();
    let parent = repo.head().ok().and_then(|h| h.peel_to_commit().ok());
    let parents: Vec<&git2::Commit<'_>> = parent.iter().collect();
    let oid = repo
        .commit(Some("HEAD"), &sig, &sig, message, &tree, &parents)
        .unwrap();
    repo.reference("refs/heads/main", oid, true, "test")
        .unwrap();
    oid.to_string()
}

/// The repository at `dir` (committed as `rev`) through the three readers:
/// disk, `check --base`'s revision reader, and the daemon's mirror.
fn read_three(dir: &Path, mirror: &Path, rev: &str) -> [Result<RepoSources, TreeError>; 3] {
    let disk = tree::fs::load(dir, Traces::Read);
    let git = GitRepo::open(dir).unwrap();
    assert_eq!(git.prefix(), "");
    let at = git.load(rev).map(|r| {
        assert_eq!(r.commit, rev);
        r.sources
    });
    let m = Mirror::open(mirror, &dir.to_string_lossy(), "main").unwrap();
    assert_eq!(m.fetch().unwrap(), rev);
    let daemon = m.read_commit(rev).unwrap().sources;
    [disk, at, daemon]
}

fn names(files: &[sluice::source::SourceFile]) -> Vec<&str> {
    files.iter().map(|f| f.name.as_str()).collect()
}

#[test]
fn disk_revision_and_daemon_read_the_same_set() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("repo");
    let repo = git2::Repository::init(&dir).unwrap();
    let policy = "policy p version 1.0.0 {}\n";
    write_repo(
        &dir,
        &[
            ("sluice.toml", TOML),
            ("policies/core.policy", CORE),
            ("policies/.dot.policy", "policy dot version 1.0.0 {}\n"),
            ("a/b/deep.policy", "policy deep version 1.0.0 {}\n"),
            // Near misses: not the extension `policy`.
            ("policies/x.policy.bak", "not a policy"),
            ("policies/policy", "not a policy"),
            ("policies/.policy", "not a policy"),
            ("policies/x.policies", "not a policy"),
            // Excluded folders, and a nested repository in a sub-folder.
            (".hidden/h.policy", policy),
            ("target/t.policy", policy),
            ("node_modules/n.policy", policy),
            ("team/sub/sluice.toml", TOML),
            ("team/sub/x.policy", policy),
            ("team/sub/deeper/y.policy", policy),
            ("team/own.policy", "policy own version 1.0.0 {}\n"),
            // Traces: `*.jsonl` under `traces/`, with the same exclusions.
            ("traces/a.jsonl", TRACE),
            ("traces/more/b.jsonl", TRACE),
            ("traces/a.jsonl.bak", TRACE),
            ("traces/.old/c.jsonl", TRACE),
            ("elsewhere/d.jsonl", TRACE),
            // The agent inventory: `*.toml` directly in the root's `agents/`.
            (
                "agents/bot.toml",
                "id = \"bot\"\nowner = \"o\"\ntools = [\"pay\"]\n",
            ),
            (
                "agents/ops.toml",
                "id = \"ops\"\nowner = \"o\"\ntools = [\"pay\"]\n",
            ),
            ("agents/old/gone.toml", "id = \"gone\""),
            ("agents/README.md", "the agents"),
            ("agents/.toml", "not an agent"),
            ("a/agents/x.toml", "not the root's agents"),
        ],
    );
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(dir.join("policies/core.policy"), dir.join("link.policy"))
            .unwrap();
        // Names that are not UTF-8 but not part of the set either.
        std::fs::write(latin1(&dir, "notes-", ".txt"), "x").unwrap();
        std::fs::create_dir_all(latin1(&dir, ".cach", "")).unwrap();
        std::fs::write(latin1(&dir, ".cach", "").join("z.policy"), policy).unwrap();
        std::fs::write(latin1(&dir, "policies/x", ".policy.bak"), "x").unwrap();
    }
    let rev = commit_all(&repo, "all");
    let [disk, at, daemon] = read_three(&dir, &tmp.path().join("mirror"), &rev);
    let (disk, at, daemon) = (disk.unwrap(), at.unwrap(), daemon.unwrap());
    assert_eq!(
        names(&disk.policies),
        [
            "a/b/deep.policy",
            "policies/.dot.policy",
            "policies/core.policy",
            "team/own.policy"
        ]
    );
    assert_eq!(
        names(&disk.traces),
        ["traces/a.jsonl", "traces/more/b.jsonl"]
    );
    assert_eq!(names(&disk.agents), ["agents/bot.toml", "agents/ops.toml"]);
    assert_eq!(at.project, disk.project);
    assert_eq!(at.policies, disk.policies);
    assert_eq!(at.agents, disk.agents);
    assert!(at.traces.is_empty(), "`check --base` reads no traces");
    assert_eq!(daemon, disk);

    // A file of the set whose name is not UTF-8: every reader refuses it,
    // naming it, rather than one reading it and another skipping it.
    #[cfg(unix)]
    {
        std::fs::write(latin1(&dir, "policies/caf", ".policy"), policy).unwrap();
        let rev = commit_all(&repo, "a policy file named in Latin-1");
        let read = read_three(&dir, &tmp.path().join("mirror"), &rev);
        for r in read {
            match r {
                Err(TreeError::NameNotUtf8 { path, .. }) => {
                    assert_eq!(path, "policies/caf\\xe9.policy");
                }
                other => panic!("expected a refused name, got {other:?}"),
            }
        }
        // In a folder whose name is not UTF-8, too.
        std::fs::remove_file(latin1(&dir, "policies/caf", ".policy")).unwrap();
        std::fs::create_dir_all(latin1(&dir, "caf", "")).unwrap();
        std::fs::write(latin1(&dir, "caf", "").join("in.policy"), policy).unwrap();
        let rev = commit_all(&repo, "a folder named in Latin-1");
        let read = read_three(&dir, &tmp.path().join("mirror"), &rev);
        for r in read {
            match r {
                Err(TreeError::NameNotUtf8 { path, .. }) => {
                    assert_eq!(path, "caf\\xe9/in.policy");
                }
                other => panic!("expected a refused name, got {other:?}"),
            }
        }
        // The command line says which file and exits 2.
        let o = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .arg("--repo")
            .arg(&dir)
            .arg("check")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(
            err.contains("the file name `caf\\xe9/in.policy` is not valid UTF-8"),
            "{err}"
        );
    }
}

#[test]
fn a_traces_folder_outside_the_repository_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    write_repo(
        tmp.path(),
        &[(
            "sluice.toml",
            &TOML.replace("[project]", "[project]\ntraces = \"../shared\""),
        )],
    );
    let err = tree::fs::load(tmp.path(), Traces::Read).unwrap_err();
    assert!(
        matches!(&err, TreeError::TracesOutside { dir } if dir == "../shared"),
        "{err}"
    );
    // Without traces, the set reads.
    assert!(tree::fs::load(tmp.path(), Traces::Skip).is_ok());
}
