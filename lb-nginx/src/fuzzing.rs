//! The parser and the byte-preserving edit the open-source driver runs on
//! configuration files, for the fuzz targets in the workspace's `fuzz/`
//! folder and the tests that replay their corpus. Not part of the API:
//! hidden from the docs, and it may change with any release.

use crate::config::{UpstreamFile, main_context};

/// Every server of every upstream: (upstream, address, parameters).
fn servers(file: &UpstreamFile<'_>) -> Vec<(String, String, Vec<String>)> {
    file.upstreams()
        .iter()
        .flat_map(|u| {
            u.servers().iter().map(|s| {
                (
                    u.name().to_owned(),
                    s.address().to_owned(),
                    s.params().map(str::to_owned).collect(),
                )
            })
        })
        .collect()
}

/// Parses `src` as the driver does (`main_context` for `error_log`,
/// [`UpstreamFile::parse`] for the upstreams), then, for every server
/// the driver could edit (one `find` resolves), sets each of `down` and
/// `drain` and checks what the driver relies on: the edited file parses,
/// that server gained exactly the flag, every other server and upstream
/// is as it was, and taking the flag off again gives back the original
/// bytes. Returns how many servers it held.
///
/// # Errors
///
/// The parser's message when `src` is not valid nginx syntax.
///
/// # Panics
///
/// When an edit breaks one of those promises (a finding of the fuzzer).
pub fn upstream_file(src: &[u8]) -> Result<usize, String> {
    let _ = main_context(src);
    let file = UpstreamFile::parse(src).map_err(|e| e.to_string())?;
    let before = servers(&file);
    for (i, (pool, address, params)) in before.iter().enumerate() {
        let Ok(server) = file.find(pool, address) else {
            continue;
        };
        for flag in ["down", "drain"] {
            if params.iter().any(|p| p == flag) {
                continue;
            }
            let on = server.set_flag(src, flag, true).apply(src);
            let edited = UpstreamFile::parse(&on).unwrap_or_else(|e| {
                panic!("setting {flag} on {pool}/{address} made the file unreadable: {e}")
            });
            let mut want = before.clone();
            want[i].2.push(flag.to_owned());
            assert_eq!(
                servers(&edited),
                want,
                "setting {flag} on {pool}/{address} changed only that server"
            );
            let again = edited
                .find(pool, address)
                .unwrap_or_else(|e| panic!("{pool}/{address} is not found after the edit: {e:?}"));
            let off = again.set_flag(&on, flag, false).apply(&on);
            assert!(
                off == src,
                "taking {flag} off {pool}/{address} again gives back the original bytes"
            );
        }
    }
    Ok(before.len())
}
