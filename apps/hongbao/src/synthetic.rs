//! `hongbao gen`: deterministic synthetic users for a campaign — registrations, preference
//! scores and roles — written as `profiles.bin` and `roles.bin` (layouts in
//! `hongbao_domain::profile`). `hongbao game-sim` derives the same roles from the same seed.

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use hongbao_domain::profile::{ProfileHeader, ProfileWriter, RolesWriter, StoredRole};
use hongbao_domain::synth::{FIRST_USER_ID, SynthModel};
use hongbao_domain::{Campaign, ProfileTable};

pub const PROFILES_FILE: &str = "profiles.bin";
pub const ROLES_FILE: &str = "roles.bin";
/// Write buffer: large sequential writes, bounded memory whatever the user count.
const WRITE_BUFFER_BYTES: usize = 1 << 20;
/// Most users one run generates; beyond it the files outgrow any machine this targets.
pub const MAX_USERS: u64 = 1_000_000_000;

#[derive(Debug)]
pub struct GenReport {
    pub users: u64,
    pub registered_nowhere: u64,
    pub roles: u64,
    pub profiles_bytes: u64,
    pub roles_bytes: u64,
    pub elapsed: Duration,
}

/// Generates `users` users from `seed` into `out` (created if missing). Files are written under
/// a temporary name, synced and renamed, so a crash never leaves a half file under the real name.
pub fn generate(campaign: &Campaign, users: u64, seed: u64, out: &Path) -> Result<GenReport> {
    if users == 0 || users > MAX_USERS {
        bail!("--users must be between 1 and {MAX_USERS}");
    }
    let started = Instant::now();
    std::fs::create_dir_all(out).with_context(|| format!("create {}", out.display()))?;
    let model = SynthModel::new(seed, users, campaign.games.len());
    let game_ids: Vec<String> = campaign.games.iter().map(|g| g.id.clone()).collect();

    let profiles_tmp = out.join(format!("{PROFILES_FILE}.tmp"));
    let roles_tmp = out.join(format!("{ROLES_FILE}.tmp"));
    let header = ProfileHeader { seed, first_user_id: FIRST_USER_ID, user_count: users, game_ids };
    let mut profiles = ProfileWriter::new(create(&profiles_tmp)?, header)?;
    let mut roles_out = RolesWriter::new(
        create(&roles_tmp)?,
        seed,
        FIRST_USER_ID,
        users,
        u32::try_from(campaign.games.len())?,
    )?;

    let mut registered_nowhere = 0u64;
    let mut role_count = 0u64;
    let mut user_roles: Vec<StoredRole> = Vec::with_capacity(64);
    for user in FIRST_USER_ID..FIRST_USER_ID + users {
        let profile = model.profile(user);
        profiles.push(&profile)?;
        user_roles.clear();
        if profile.registered.is_empty() {
            registered_nowhere += 1;
        }
        for game in &campaign.games {
            for role in model.roles_given(user, game.index, profile.registered) {
                user_roles.push(StoredRole {
                    game: game.index,
                    zone_id: u8::try_from(role.zone_id.0)?,
                    level: u8::try_from(role.level)?,
                    role_id: role.role_id.0,
                });
            }
        }
        role_count += user_roles.len() as u64;
        roles_out.push(&user_roles)?;
    }
    finish(profiles.finish()?, &profiles_tmp, &out.join(PROFILES_FILE))?;
    finish(roles_out.finish()?, &roles_tmp, &out.join(ROLES_FILE))?;
    Ok(GenReport {
        users,
        registered_nowhere,
        roles: role_count,
        profiles_bytes: std::fs::metadata(out.join(PROFILES_FILE))?.len(),
        roles_bytes: std::fs::metadata(out.join(ROLES_FILE))?.len(),
        elapsed: started.elapsed(),
    })
}

fn create(path: &Path) -> Result<BufWriter<File>> {
    let file = File::create(path).with_context(|| format!("create {}", path.display()))?;
    Ok(BufWriter::with_capacity(WRITE_BUFFER_BYTES, file))
}

fn finish(writer: BufWriter<File>, tmp: &Path, dest: &Path) -> Result<()> {
    let file = writer.into_inner().map_err(|e| e.into_error()).context("flush")?;
    file.sync_all().with_context(|| format!("sync {}", tmp.display()))?;
    std::fs::rename(tmp, dest).with_context(|| format!("rename to {}", dest.display()))?;
    Ok(())
}

/// Loads `DIR/profiles.bin` and checks that it was made for this campaign's games, in order:
/// a profile file for other games would silently mis-rank every list.
pub fn load_profiles(dir: &Path, campaign: &Campaign) -> Result<ProfileTable> {
    let path: PathBuf = dir.join(PROFILES_FILE);
    let file = File::open(&path).with_context(|| format!("open {}", path.display()))?;
    let table = ProfileTable::read(BufReader::with_capacity(WRITE_BUFFER_BYTES, file))
        .with_context(|| format!("read {}", path.display()))?;
    let expected: Vec<&str> = campaign.games.iter().map(|g| g.id.as_str()).collect();
    let found: Vec<&str> = table.header().game_ids.iter().map(String::as_str).collect();
    if expected != found {
        bail!(
            "{} was generated for games {:?}, but the campaign has {:?}",
            path.display(),
            found,
            expected
        );
    }
    Ok(table)
}

/// Prints the summary `hongbao gen` shows.
pub fn print_report(out: &mut impl Write, report: &GenReport, dir: &Path) -> std::io::Result<()> {
    writeln!(
        out,
        "generated {} users ({} registered nowhere, {} roles) in {:.2} s into {}: {} = {} bytes, {} = {} bytes",
        report.users,
        report.registered_nowhere,
        report.roles,
        report.elapsed.as_secs_f64(),
        dir.display(),
        PROFILES_FILE,
        report.profiles_bytes,
        ROLES_FILE,
        report.roles_bytes,
    )
}
