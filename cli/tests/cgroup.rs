//! `ringfeed bench` inside a real cpuset cgroup that allows one CPU: it
//! runs, and its workers run on that CPU only (with io_uring and with the
//! blocking-read fallback). Needs root and a writable cgroup file system
//! (cgroup v2 with the cpuset controller, or the v1 cpuset hierarchy);
//! elsewhere it prints why it is skipped.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_ringfeed")
}

/// A cpuset cgroup made for this test, removed when dropped.
struct Cpuset {
    dir: PathBuf,
}

impl Drop for Cpuset {
    fn drop(&mut self) {
        // Empty by now: every process put in it has exited and been waited
        // for.
        if let Err(e) = std::fs::remove_dir(&self.dir) {
            eprintln!("cannot remove {}: {e}", self.dir.display());
        }
    }
}

fn write(path: &Path, value: &str) -> Result<(), String> {
    std::fs::write(path, value).map_err(|e| format!("cannot write {value:?} to {}: {e}", path.display()))
}

/// Creates a cgroup allowing only `cpu`: under the cgroup v2 root when it
/// has the cpuset controller, else in the v1 cpuset hierarchy.
fn cpuset(cpu: usize) -> Result<Cpuset, String> {
    let name = format!("ringfeed-test-{}", std::process::id());
    let v2 = ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"].into_iter().map(Path::new).find(|root| {
        std::fs::read_to_string(root.join("cgroup.controllers"))
            .is_ok_and(|c| c.split_whitespace().any(|c| c == "cpuset"))
    });
    let (dir, mems) = if let Some(root) = v2 {
        // The root is exempt from the no-internal-processes rule, so the
        // controller can be enabled for its children whatever runs in it.
        let enabled = std::fs::read_to_string(root.join("cgroup.subtree_control")).unwrap_or_default();
        if !enabled.split_whitespace().any(|c| c == "cpuset") {
            write(&root.join("cgroup.subtree_control"), "+cpuset")?;
        }
        (root.join(name), None)
    } else {
        let root = Path::new("/sys/fs/cgroup/cpuset");
        if !root.join("cpuset.cpus").exists() {
            return Err("no cgroup v2 hierarchy with cpuset and no v1 cpuset hierarchy".into());
        }
        // v1 admits no task into a cpuset without memory nodes.
        let mems = std::fs::read_to_string(root.join("cpuset.mems")).map_err(|e| e.to_string())?;
        (root.join(name), Some(mems.trim().to_string()))
    };
    std::fs::create_dir(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let set = Cpuset { dir };
    if let Some(mems) = mems {
        write(&set.dir.join("cpuset.mems"), &mems)?;
    }
    write(&set.dir.join("cpuset.cpus"), &cpu.to_string())?;
    Ok(set)
}

/// Runs `ringfeed args…` inside the cgroup: a shell moves itself in, then
/// execs the binary, so the binary starts inside it.
fn run_in(set: &Cpuset, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new("sh")
        .arg("-c")
        .arg("echo $$ > \"$0\" && exec \"$@\"")
        .arg(set.dir.join("cgroup.procs"))
        .arg(bin())
        .args(args)
        .envs(env.iter().copied())
        .env_remove("LOCAL_RANK")
        .env_remove("LOCAL_WORLD_SIZE")
        .env_remove("RANK")
        .env_remove("WORLD_SIZE")
        .output()
        .unwrap()
}

fn json(o: &Output) -> serde_json::Value {
    assert!(
        o.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

fn worker_cpus(j: &serde_json::Value) -> Vec<Vec<usize>> {
    serde_json::from_value(j["worker_cpus"].clone()).unwrap()
}

#[test]
fn bench_runs_inside_a_one_cpu_cpuset_cgroup() {
    let online = std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap_or_default();
    if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        eprintln!("skipped: needs 2 CPUs (online: {})", online.trim());
        return;
    }
    let set = match cpuset(1) {
        Ok(set) => set,
        Err(why) => {
            eprintln!("skipped: {why}");
            return;
        }
    };
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..200u32 {
        std::fs::write(src.join(format!("{i:04}.bin")), vec![i as u8; 100 + i as usize * 13]).unwrap();
    }
    let ds = dir.path().join("ds");
    let o =
        Command::new(bin()).args(["pack", "-q", "--shard-size", "8K"]).arg(&src).arg(&ds).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let ds = ds.to_str().unwrap();
    for backend in ["uring", "blocking"] {
        let env = [("RINGFEED_IO", backend)];
        // By default, one worker per CPU the cgroup allows.
        let j = json(&run_in(&set, &["bench", ds, "--json", "--no-digest", "--batch", "16"], &env));
        assert_eq!(j["cores"], 1, "{backend}: {j}");
        assert_eq!(j["samples"], 200, "{backend}");
        assert_eq!(worker_cpus(&j), vec![vec![1]], "{backend}");
        // More workers than CPUs: all fenced to the allowed one.
        let j = json(&run_in(
            &set,
            &["bench", ds, "--json", "--no-digest", "--batch", "16", "--cores", "2"],
            &env,
        ));
        assert_eq!(worker_cpus(&j), vec![vec![1], vec![1]], "{backend}");
    }
}
