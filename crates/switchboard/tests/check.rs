//! `switchboard check` as an admin runs it: on the shipped config, on one with a warning, and
//! on one with a file that does not parse.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The shipped `config/` copied to a fresh temporary directory, with `file` edited (the first
/// `find` replaced by `replace`) when given.
struct ConfigCopy(PathBuf);

impl ConfigCopy {
    fn new(label: &str, edit: Option<(&str, &str, &str)>) -> ConfigCopy {
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config");
        let dir =
            std::env::temp_dir().join(format!("switchboard-check-{label}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        copy_dir(&shipped, &dir);
        if let Some((file, find, replace)) = edit {
            let p = dir.join(file);
            let text = std::fs::read_to_string(&p).unwrap();
            assert!(text.contains(find), "{find:?} not in {file}");
            std::fs::write(&p, text.replacen(find, replace, 1)).unwrap();
        }
        ConfigCopy(dir)
    }

    /// Run `switchboard check --config DIR`: (success, stdout, stderr).
    fn check(&self) -> (bool, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args(["check", "--config"])
            .arg(&self.0)
            .env_remove("SWITCHBOARD_CONFIG")
            .output()
            .expect("run switchboard check");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

impl Drop for ConfigCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

#[test]
fn the_shipped_config_checks_clean() {
    let c = ConfigCopy::new("shipped", None);
    let (ok, stdout, stderr) = c.check();
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains(": OK: 10 users, 5 agents, 1 queues, 1 skills"),
        "{stdout}"
    );
    assert_eq!(stderr, "", "no warnings on the shipped config");
}

#[test]
fn an_agent_skill_no_queue_asks_for_is_printed_as_a_warning_and_the_check_passes() {
    let c = ConfigCopy::new(
        "skill-warning",
        Some((
            "agents.toml",
            "skills = { english = 5 }",
            "skills = { englsh = 5 }",
        )),
    );
    let (ok, stdout, stderr) = c.check();
    assert!(ok, "a warning does not fail the check: {stderr}");
    assert!(stdout.contains(": OK: "), "{stdout}");
    let expected = format!(
        "warning: {}: agents.1001.skills.englsh: no queue asks for this skill; did you mean \"english\"?\n",
        c.0.join("agents.toml:15").display()
    );
    assert_eq!(stderr, expected);
}

#[test]
fn a_file_that_does_not_parse_is_one_error_and_the_check_fails() {
    let c = ConfigCopy::new(
        "syntax-error",
        Some(("queues.toml", "[queues.support]", "[queues.support")),
    );
    let (ok, stdout, stderr) = c.check();
    assert!(!ok, "{stdout}");
    assert_eq!(
        stderr.lines().count(),
        1,
        "only the syntax error:\n{stderr}"
    );
    assert!(
        stderr.starts_with(&format!("{}: ", c.0.join("queues.toml:20").display())),
        "{stderr}"
    );
}
