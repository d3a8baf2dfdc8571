//! The files a config names, opened when it is loaded (`Config::load`): each node's
//! `password_file` and its DSN's `sslrootcert`, `sslcert` and `sslkey`. The only file IO
//! of validation: `validate` lists the files with the place to blame, [`open_all`] opens
//! them. (The probe reads them again when it connects: they may change.)

use std::io::Read;
use std::path::PathBuf;

use super::error::Site;
use super::ConfigError;

/// A file the config names, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NamedFile {
    pub path: PathBuf,
    /// The DSN key that names it (`sslrootcert`, ...), or None when the key at `site` is
    /// the file's own (`password_file`).
    pub dsn_key: Option<&'static str>,
    pub site: Site,
}

/// Opens every file and reads a byte of it (a directory opens but does not read); the
/// first that fails is the error, e.g. `cannot read sslrootcert /etc/ca.pem: No such file
/// or directory (os error 2)`. Contents are never shown.
pub(crate) fn open_all(files: &[NamedFile]) -> Result<(), ConfigError> {
    for f in files {
        if let Err(e) = std::fs::File::open(&f.path).and_then(|mut file| file.read(&mut [0u8; 1])) {
            let what = f.dsn_key.map(|k| format!("{k} ")).unwrap_or_default();
            return Err(f.site.error(format!("cannot read {what}{}: {e}", f.path.display())));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    /// A config (in `dir`) with one node, its DSN on line 6 and `password_file` on line 7.
    fn config(dir: &std::path::Path, dsn: &str, password_file: &str) -> std::path::PathBuf {
        let path = dir.join("lagdns.toml");
        let text = format!(
            "[[cluster]]\nname = \"main\"\n[[cluster.node]]\nname = \"pg1\"\naddress = \"127.0.0.11\"\n\
             dsn = \"host=h password=hunter2 {dsn}\"\npassword_file = \"{password_file}\"\n"
        );
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn load_opens_every_named_file_and_blames_file_line_and_key() {
        let dir = std::env::temp_dir().join(format!("lagdns-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for name in ["ca.pem", "c.pem", "k.pem", "pw"] {
            std::fs::write(dir.join(name), "x").unwrap();
        }
        let d = dir.display();
        let (toml, enoent) = (dir.join("lagdns.toml"), "No such file or directory (os error 2)");
        let at = |line: usize, key: &str| format!("{}:{line}: cluster[main].node[pg1].{key}", toml.display());
        let all = format!("sslmode=verify-full sslrootcert={d}/ca.pem sslcert={d}/c.pem sslkey={d}/k.pem");
        let cases = [
            (all.clone(), format!("{d}/pw"), None),
            ("sslmode=verify-full sslrootcert=system".to_string(), format!("{d}/pw"), None),
            (
                format!("sslrootcert={d}/none.pem"),
                format!("{d}/pw"),
                Some(format!("{}: cannot read sslrootcert {d}/none.pem: {enoent}", at(6, "dsn"))),
            ),
            (
                format!("sslcert={d}/c.pem sslkey={d}/none.key"),
                format!("{d}/pw"),
                Some(format!("{}: cannot read sslkey {d}/none.key: {enoent}", at(6, "dsn"))),
            ),
            (
                format!("sslcert={d} sslkey={d}/k.pem"),
                format!("{d}/pw"),
                Some(format!("{}: cannot read sslcert {d}: Is a directory (os error 21)", at(6, "dsn"))),
            ),
            (
                all.clone(),
                format!("{d}/none"),
                Some(format!("{}: cannot read {d}/none: {enoent}", at(7, "password_file"))),
            ),
        ];
        for (dsn, password_file, want) in cases {
            let path = config(&dir, &dsn, &password_file);
            let got = Config::load(&path).map(|_| ()).map_err(|e| e.to_string());
            assert_eq!(got.as_ref().err(), want.as_ref(), "{dsn} / {password_file}");
            // Parsing alone opens nothing.
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(Config::parse(&text, "t.toml").is_ok(), "{dsn}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
