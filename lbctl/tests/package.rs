//! The Debian package: `scripts/package` builds it around the lbctl binary
//! cargo built for this test; it installs with `dpkg -i` into this
//! machine, works (`lbctl --version`, `man -w lbctl`, the example
//! inventory), and `dpkg --purge` leaves nothing behind.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn run(cmd: &str, args: &[&str]) -> Output {
    Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"))
}

fn ok(cmd: &str, args: &[&str]) -> String {
    let out = run(cmd, args);
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// `dpkg ARGS`, waiting (up to 10 minutes) while another dpkg or apt
/// holds dpkg's lock, as apt's `DPkg::Lock::Timeout` does.
fn dpkg(args: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let out = run("dpkg", args);
        if out.status.success() {
            return;
        }
        let err = text(&out.stderr);
        assert!(
            err.contains("lock") && Instant::now() < deadline,
            "dpkg {args:?}: {}{err}",
            text(&out.stdout)
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn installed() -> bool {
    run("dpkg-query", &["-W", "-f=${Status}", "lbctl"])
        .stdout
        .starts_with(b"install ok installed")
}

/// Purges the package if the test installed it, even when it panicked.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        if installed() {
            let _ = run("dpkg", &["--purge", "lbctl"]);
        }
    }
}

#[test]
fn the_debian_package_installs_works_and_purges_cleanly() {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "installing a package with dpkg -i needs root (run scripts/test as root)"
    );
    for (bin, pkg) in [("man", "man-db"), ("dpkg-shlibdeps", "dpkg-dev")] {
        assert!(
            run("sh", &["-c", &format!("command -v {bin}")])
                .status
                .success(),
            "{bin} is needed for this test: apt-get install {pkg}"
        );
    }
    assert!(
        !installed(),
        "an lbctl package is installed already; this test installs and purges its own: dpkg --purge lbctl first"
    );
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let out_dir = tempfile::tempdir().unwrap();
    let built = ok(
        root.join("scripts/package").to_str().unwrap(),
        &[
            "--bin",
            env!("CARGO_BIN_EXE_lbctl"),
            "--out",
            out_dir.path().to_str().unwrap(),
        ],
    );
    let deb = PathBuf::from(built.trim());
    assert!(deb.is_file(), "scripts/package printed the .deb: {built}");
    let contents = ok("dpkg-deb", &["-c", deb.to_str().unwrap()]);
    let files: Vec<String> = contents
        .lines()
        .filter(|l| l.starts_with('-'))
        .map(|l| {
            l.rsplit(' ')
                .next()
                .unwrap()
                .trim_start_matches('.')
                .to_string()
        })
        .collect();
    for want in [
        "/usr/bin/lbctl",
        "/usr/share/man/man1/lbctl.1.gz",
        "/usr/share/man/man1/lbctl-watch.1.gz",
        "/usr/share/man/man1/lbctl-discover.1.gz",
        "/usr/share/man/man1/lbctl-drain.1.gz",
        "/usr/share/bash-completion/completions/lbctl",
        "/usr/share/zsh/vendor-completions/_lbctl",
        "/usr/share/fish/vendor_completions.d/lbctl.fish",
        "/etc/lbctl/lbctl.toml",
    ] {
        assert!(
            files.iter().any(|f| f == want),
            "{want} in the package:\n{contents}"
        );
    }
    assert_eq!(
        ok(
            "dpkg-deb",
            &["-f", deb.to_str().unwrap(), "Package", "Version"]
        ),
        format!("Package: lbctl\nVersion: {}\n", env!("CARGO_PKG_VERSION"))
    );

    let guard = Installed;
    dpkg(&["-i", deb.to_str().unwrap()]);
    assert!(installed());
    assert_eq!(
        ok("/usr/bin/lbctl", &["--version"]),
        format!("lbctl {}\n", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(
        ok("man", &["-w", "lbctl"]),
        "/usr/share/man/man1/lbctl.1.gz\n"
    );
    assert_eq!(
        ok("man", &["-w", "lbctl-watch"]),
        "/usr/share/man/man1/lbctl-watch.1.gz\n"
    );
    let page = ok("sh", &["-c", "man lbctl-discover | cat"]);
    assert!(
        page.contains("--write"),
        "the man page is the clap help: {page}"
    );
    assert_eq!(
        ok("dpkg-query", &["-W", "-f=${Conffiles}", "lbctl"])
            .split_whitespace()
            .next(),
        Some("/etc/lbctl/lbctl.toml"),
        "the example inventory is a conffile"
    );
    // The example inventory is a valid one.
    assert_eq!(
        ok(
            "/usr/bin/lbctl",
            &[
                "--config",
                "/etc/lbctl/lbctl.toml",
                "status",
                "--output",
                "json"
            ]
        ),
        "{\"nodes\":[]}\n"
    );

    dpkg(&["--purge", "lbctl"]);
    drop(guard);
    assert!(!installed(), "purged");
    for f in &files {
        assert!(!Path::new(f).exists(), "{f} is left after dpkg --purge");
    }
    assert!(!Path::new("/etc/lbctl").exists(), "/etc/lbctl is left");
    assert!(
        !run("man", &["-w", "lbctl"]).status.success(),
        "no man page is left"
    );
}
