//! Language packages installed by the real tools into a test root: pip, npm, cargo, and a fat
//! jar made of Debian's jars.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

/// Runs a command that must succeed.
pub fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `pip install --no-deps --target <root>/usr/lib/python3/site-packages`.
pub fn pip_install(root: &Path, specs: &[&str]) {
    run(Command::new("pip")
        .args(["install", "--quiet", "--no-deps", "--no-compile", "--target"])
        .arg(root.join("usr/lib/python3/site-packages"))
        .args(specs));
}

/// An application `web` 1.0.0 at `<root>/<dir>` with `npm install --ignore-scripts` of `specs`.
pub fn npm_install(root: &Path, dir: &str, specs: &[&str]) {
    let app = root.join(dir);
    std::fs::create_dir_all(&app).unwrap();
    std::fs::write(
        app.join("package.json"),
        r#"{"name":"web","version":"1.0.0","private":true}"#,
    )
    .unwrap();
    run(Command::new("npm")
        .args([
            "install",
            "--ignore-scripts",
            "--no-audit",
            "--no-fund",
            "--silent",
        ])
        .args(specs)
        .current_dir(&app));
}

/// A crate `tool` 0.1.0 at `<root>/opt/tool` depending on `deps` (Cargo.toml lines), locked
/// by `cargo generate-lockfile`.
pub fn cargo_lock(root: &Path, deps: &str) {
    let krate = root.join("opt/tool");
    std::fs::create_dir_all(krate.join("src")).unwrap();
    std::fs::write(
        krate.join("Cargo.toml"),
        format!(
            "[package]\nname = \"tool\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\n{deps}"
        ),
    )
    .unwrap();
    std::fs::write(krate.join("src/main.rs"), "fn main() {}\n").unwrap();
    run(Command::new("cargo").arg("generate-lockfile").current_dir(&krate));
}

/// `<root>/srv/app.jar`, a Spring Boot–style fat jar nesting Debian's log4j-core and
/// commons-lang3 jars (from `super::debian_jars`, already in `<root>/usr/share/java`) under
/// `BOOT-INF/lib`, with no Maven metadata of its own.
pub fn fat_jar(root: &Path) {
    let lib = root.join("usr/share/java");
    std::fs::create_dir_all(root.join("srv")).unwrap();
    let script = format!(
        "import zipfile\nwith zipfile.ZipFile('{}', 'w', zipfile.ZIP_DEFLATED) as z:\n    z.writestr('META-INF/MANIFEST.MF', 'Main-Class: org.springframework.boot.loader.JarLauncher\\n')\n    z.write('{}', 'BOOT-INF/lib/log4j-core-2.19.0.jar')\n    z.write('{}', 'BOOT-INF/lib/commons-lang3-3.12.0.jar')\n",
        root.join("srv/app.jar").display(),
        lib.join("log4j-core.jar").display(),
        lib.join("commons-lang3.jar").display(),
    );
    run(Command::new("python3").args(["-c", &script]));
}

/// `scan rootfs:<root>` as report JSON, and its packages as (ecosystem, name, version, path).
pub fn scan_packages(
    root: &Path,
    db: &Path,
) -> (serde_json::Value, BTreeSet<(String, String, String, String)>) {
    let out = super::scan_json(&format!("rootfs:{}", root.display()), db);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let packages = r["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let s = |k: &str| p[k].as_str().unwrap().to_string();
            (s("ecosystem"), s("name"), s("version"), s("path"))
        })
        .collect();
    (r, packages)
}

/// (package, advisory id) of every finding of a report.
pub fn finding_ids(r: &serde_json::Value) -> BTreeSet<(String, String)> {
    r["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["package"].as_str().unwrap().to_string(),
                f["id"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// `gem build` of a small gem `demo-tool` 1.2.3 and `gem install --local` of it into
/// `<root>/usr/local/bundle` (RubyGems writes its specifications/*.gemspec).
pub fn gem_install(root: &Path, work: &Path) {
    let src = work.join("gemsrc");
    std::fs::create_dir_all(src.join("lib")).unwrap();
    std::fs::write(
        src.join("demo.gemspec"),
        "Gem::Specification.new do |s|\n  s.name = \"demo-tool\"\n  s.version = \"1.2.3\"\n  s.summary = \"demo\"\n  s.authors = [\"stalewatch tests\"]\n  s.files = [\"lib/demo.rb\"]\nend\n",
    )
    .unwrap();
    std::fs::write(src.join("lib/demo.rb"), "module Demo; end\n").unwrap();
    run(Command::new("gem")
        .args(["build", "-q", "demo.gemspec"])
        .current_dir(&src));
    run(Command::new("gem")
        .args(["install", "--local", "--no-document", "--install-dir"])
        .arg(root.join("usr/local/bundle"))
        .arg(src.join("demo-tool-1.2.3.gem")));
}

/// `composer install` (offline: path repositories written here, packagist.org off) of
/// monolog/monolog 2.9.1 and symfony/http-kernel v6.4.1 into `<root>/var/www`.
pub fn composer_install(root: &Path, work: &Path) {
    let pkgs = work.join("composer-pkgs");
    for (dir, name, version) in [
        ("monolog", "monolog/monolog", "2.9.1"),
        ("http-kernel", "symfony/http-kernel", "v6.4.1"),
    ] {
        std::fs::create_dir_all(pkgs.join(dir)).unwrap();
        std::fs::write(
            pkgs.join(dir).join("composer.json"),
            format!(r#"{{"name":"{name}","version":"{version}"}}"#),
        )
        .unwrap();
    }
    let app = root.join("var/www");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::write(
        app.join("composer.json"),
        format!(
            r#"{{"name":"acme/site","require":{{"monolog/monolog":"2.9.1","symfony/http-kernel":"v6.4.1"}},"repositories":[{{"packagist.org":false}},{{"type":"path","url":"{}/*","options":{{"symlink":false}}}}]}}"#,
            pkgs.display()
        ),
    )
    .unwrap();
    run(Command::new("composer")
        .args(["install", "--no-interaction", "--no-progress", "--quiet"])
        .env("COMPOSER_HOME", work.join("composer-home"))
        .current_dir(&app));
}

/// A Rust executable built by `cargo auditable build --release` depending on `deps`
/// (Cargo.toml lines), copied to `out`, and a stripped copy beside it (`<out>-stripped`).
pub fn auditable_binary(work: &Path, out: &Path, deps: &str) {
    let krate = work.join("auditable-src");
    std::fs::create_dir_all(krate.join("src")).unwrap();
    std::fs::write(
        krate.join("Cargo.toml"),
        format!(
            "[package]\nname = \"svc\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\n{deps}"
        ),
    )
    .unwrap();
    std::fs::write(krate.join("src/main.rs"), "fn main() { println!(\"svc\"); }\n").unwrap();
    run(Command::new("cargo")
        .args(["auditable", "build", "--release", "--quiet"])
        .env("CARGO_TARGET_DIR", work.join("auditable-target"))
        .current_dir(&krate));
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    std::fs::copy(work.join("auditable-target/release/svc"), out).unwrap();
    let stripped = out.with_file_name(format!("{}-stripped", out.file_name().unwrap().to_string_lossy()));
    run(Command::new("strip").arg("-o").arg(&stripped).arg(out));
}
