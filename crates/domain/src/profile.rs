//! Profiles: a user's registrations in all games and preference scores, in one value, and the
//! compact table that holds them for every user (`profiles.bin`, written by `hongbao gen`).
//!
//! One lookup per request returns everything the gift list needs about a user, never one lookup
//! per game (the original kept "user id → registered games" in one CMEM value for this reason).

use std::io::{self, Read, Write};

use crate::campaign::{GameIndex, MAX_GAMES};

/// The games a user is registered in: bit `i` is [`GameIndex`] `i`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct GameSet(pub u16);

impl GameSet {
    pub fn contains(self, game: GameIndex) -> bool {
        game.0 < 16 && self.0 & (1 << game.0) != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn with(self, game: GameIndex) -> GameSet {
        assert!(usize::from(game.0) < MAX_GAMES);
        GameSet(self.0 | (1 << game.0))
    }
}

/// What the gift list knows about one user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Profile {
    pub registered: GameSet,
    /// Preference score per game (the offline recommender's output), higher is better.
    pub preference: [u8; MAX_GAMES],
}

impl Profile {
    /// An unknown user: registered nowhere, no preferences. Not an error.
    pub const NEW_USER: Profile = Profile { registered: GameSet(0), preference: [0; MAX_GAMES] };
}

// ---------------------------------------------------------------------------------------------
// Persisted layout of `profiles.bin`. WARNING: changing anything below breaks every profile file
// already written; bump `PROFILE_VERSION` and keep reading the old one if you must change it.
//
//   magic          8 bytes  "HBPROF\0\0"
//   version        u32 LE   PROFILE_VERSION
//   game_count     u32 LE   ≤ MAX_GAMES
//   seed           u64 LE   the generator's seed (0 for imported data)
//   first_user_id  u64 LE
//   user_count     u64 LE
//   game ids       game_count × (u8 length, bytes)      must match the campaign's games, in order
//   records        user_count × (u16 LE mask, game_count × u8 preference)
//   crc32          u32 LE   over every byte before it
//
// A record is 2 + game_count bytes: 12 bytes per user for a ten-game campaign.

const PROFILE_MAGIC: &[u8; 8] = b"HBPROF\0\0";
pub const PROFILE_VERSION: u32 = 1;
/// Refuse files claiming more users than this: a corrupt header must not make us allocate
/// terabytes. 2^32 users at 18 bytes is 72 GiB, beyond any machine this runs on.
pub const MAX_PROFILE_USERS: u64 = 1 << 32;

/// Header fields of a profile file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProfileHeader {
    pub seed: u64,
    pub first_user_id: u64,
    pub user_count: u64,
    pub game_ids: Vec<String>,
}

impl ProfileHeader {
    fn record_len(&self) -> usize {
        2 + self.game_ids.len()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProfileFileError {
    #[error("not a profile file (bad magic)")]
    BadMagic,
    #[error("profile file version {0} is not supported (this build reads {PROFILE_VERSION})")]
    BadVersion(u32),
    #[error("profile file is corrupt: {0}")]
    Corrupt(String),
    #[error("profile file checksum mismatch: the file is damaged")]
    Checksum,
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Writes a profile file record by record, computing the checksum as it goes.
pub struct ProfileWriter<W: Write> {
    out: W,
    crc: crc32fast::Hasher,
    header: ProfileHeader,
    written: u64,
}

impl<W: Write> ProfileWriter<W> {
    pub fn new(out: W, header: ProfileHeader) -> Result<ProfileWriter<W>, ProfileFileError> {
        assert!(header.game_ids.len() <= MAX_GAMES);
        let mut w = ProfileWriter { out, crc: crc32fast::Hasher::new(), header, written: 0 };
        let mut head = Vec::with_capacity(64);
        head.extend_from_slice(PROFILE_MAGIC);
        head.extend_from_slice(&PROFILE_VERSION.to_le_bytes());
        head.extend_from_slice(&(w.header.game_ids.len() as u32).to_le_bytes());
        head.extend_from_slice(&w.header.seed.to_le_bytes());
        head.extend_from_slice(&w.header.first_user_id.to_le_bytes());
        head.extend_from_slice(&w.header.user_count.to_le_bytes());
        for id in &w.header.game_ids {
            let len = u8::try_from(id.len())
                .map_err(|_| ProfileFileError::Corrupt(format!("game id `{id}` too long")))?;
            head.push(len);
            head.extend_from_slice(id.as_bytes());
        }
        w.put(&head)?;
        Ok(w)
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.crc.update(bytes);
        self.out.write_all(bytes)
    }

    /// Appends the next user's record (users in id order, from `first_user_id`).
    pub fn push(&mut self, profile: &Profile) -> Result<(), ProfileFileError> {
        assert!(self.written < self.header.user_count, "more records than the header declares");
        let games = self.header.game_ids.len();
        let mut rec = [0u8; 2 + MAX_GAMES];
        rec[..2].copy_from_slice(&profile.registered.0.to_le_bytes());
        rec[2..2 + games].copy_from_slice(&profile.preference[..games]);
        self.put(&rec[..2 + games])?;
        self.written += 1;
        Ok(())
    }

    /// Writes the checksum; returns the inner writer for the caller to flush and sync.
    pub fn finish(mut self) -> Result<W, ProfileFileError> {
        assert_eq!(self.written, self.header.user_count, "fewer records than the header declares");
        let crc = self.crc.clone().finalize();
        self.out.write_all(&crc.to_le_bytes())?;
        Ok(self.out)
    }
}

/// Every user's profile, resident in memory: `2 + games` bytes per user, O(1) lookup.
#[derive(Clone)]
pub struct ProfileTable {
    header: ProfileHeader,
    records: Vec<u8>,
}

impl std::fmt::Debug for ProfileTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProfileTable").field("header", &self.header).finish_non_exhaustive()
    }
}

impl ProfileTable {
    /// An empty table: everybody is a new user.
    pub fn empty(game_ids: Vec<String>) -> ProfileTable {
        ProfileTable {
            header: ProfileHeader { seed: 0, first_user_id: 0, user_count: 0, game_ids },
            records: Vec::new(),
        }
    }

    /// Reads a whole profile file, checking magic, version, sizes and checksum.
    pub fn read(mut input: impl Read) -> Result<ProfileTable, ProfileFileError> {
        let mut crc = crc32fast::Hasher::new();
        let mut fixed = [0u8; 40];
        input.read_exact(&mut fixed)?;
        crc.update(&fixed);
        if &fixed[..8] != PROFILE_MAGIC {
            return Err(ProfileFileError::BadMagic);
        }
        let word = |at: usize| {
            u32::from_le_bytes([fixed[at], fixed[at + 1], fixed[at + 2], fixed[at + 3]])
        };
        let dword = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&fixed[at..at + 8]);
            u64::from_le_bytes(b)
        };
        let version = word(8);
        if version != PROFILE_VERSION {
            return Err(ProfileFileError::BadVersion(version));
        }
        let game_count = word(12) as usize;
        if game_count > MAX_GAMES {
            return Err(ProfileFileError::Corrupt(format!(
                "{game_count} games, at most {MAX_GAMES}"
            )));
        }
        let (seed, first_user_id, user_count) = (dword(16), dword(24), dword(32));
        if user_count > MAX_PROFILE_USERS {
            return Err(ProfileFileError::Corrupt(format!(
                "{user_count} users is beyond the limit"
            )));
        }
        let mut game_ids = Vec::with_capacity(game_count);
        for _ in 0..game_count {
            let mut len = [0u8; 1];
            input.read_exact(&mut len)?;
            let mut id = vec![0u8; usize::from(len[0])];
            input.read_exact(&mut id)?;
            crc.update(&len);
            crc.update(&id);
            game_ids.push(
                String::from_utf8(id)
                    .map_err(|_| ProfileFileError::Corrupt("game id is not UTF-8".into()))?,
            );
        }
        let header = ProfileHeader { seed, first_user_id, user_count, game_ids };
        let len = usize::try_from(user_count)
            .ok()
            .and_then(|n| n.checked_mul(header.record_len()))
            .ok_or_else(|| ProfileFileError::Corrupt("record area too large".into()))?;
        let mut records = vec![0u8; len];
        input.read_exact(&mut records).map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => ProfileFileError::Corrupt("file is truncated".into()),
            _ => ProfileFileError::Io(e),
        })?;
        crc.update(&records);
        let mut stored = [0u8; 4];
        input
            .read_exact(&mut stored)
            .map_err(|_| ProfileFileError::Corrupt("checksum missing".into()))?;
        if crc.finalize() != u32::from_le_bytes(stored) {
            return Err(ProfileFileError::Checksum);
        }
        let mut trailing = [0u8; 1];
        if input.read(&mut trailing)? != 0 {
            return Err(ProfileFileError::Corrupt("bytes after the checksum".into()));
        }
        Ok(ProfileTable { header, records })
    }

    pub fn header(&self) -> &ProfileHeader {
        &self.header
    }

    pub fn len(&self) -> u64 {
        self.header.user_count
    }

    pub fn is_empty(&self) -> bool {
        self.header.user_count == 0
    }

    /// Bytes of memory the records take (the figure `docs/BENCHMARKS.md` reports per user).
    pub fn resident_bytes(&self) -> usize {
        self.records.capacity()
    }

    /// The user's profile; an unknown user is a new user.
    pub fn get(&self, user: u64) -> Profile {
        let Some(offset) = user.checked_sub(self.header.first_user_id) else {
            return Profile::NEW_USER;
        };
        if offset >= self.header.user_count {
            return Profile::NEW_USER;
        }
        let len = self.header.record_len();
        // In range by the check above and the size verified at load.
        let at = offset as usize * len;
        let rec = &self.records[at..at + len];
        let mut preference = [0u8; MAX_GAMES];
        preference[..len - 2].copy_from_slice(&rec[2..]);
        Profile { registered: GameSet(u16::from_le_bytes([rec[0], rec[1]])), preference }
    }
}

// ---------------------------------------------------------------------------------------------
// Persisted layout of `roles.bin` (each user's roles in every game, as `hongbao gen` wrote them).
// WARNING: changing it breaks files already written; bump `ROLES_VERSION`.
//
//   magic "HBROLES\0" | version u32 | game_count u32 | seed u64 | first_user_id u64 | user_count u64
//   then per user, in id order: u8 role count, then per role:
//     u8 game index | u8 zone id | u8 level | u64 LE role id      (11 bytes)
//   crc32 u32 LE over every byte before it
// Regions are not stored: they follow from the zone (`synth::region_of_zone`).

const ROLES_MAGIC: &[u8; 8] = b"HBROLES\0";
pub const ROLES_VERSION: u32 = 1;

/// One stored role.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoredRole {
    pub game: GameIndex,
    pub zone_id: u8,
    pub level: u8,
    pub role_id: u64,
}

/// Writes `roles.bin`.
pub struct RolesWriter<W: Write> {
    out: W,
    crc: crc32fast::Hasher,
    user_count: u64,
    written: u64,
}

impl<W: Write> RolesWriter<W> {
    pub fn new(
        mut out: W,
        seed: u64,
        first_user_id: u64,
        user_count: u64,
        game_count: u32,
    ) -> io::Result<Self> {
        let mut crc = crc32fast::Hasher::new();
        let mut head = Vec::with_capacity(40);
        head.extend_from_slice(ROLES_MAGIC);
        head.extend_from_slice(&ROLES_VERSION.to_le_bytes());
        head.extend_from_slice(&game_count.to_le_bytes());
        head.extend_from_slice(&seed.to_le_bytes());
        head.extend_from_slice(&first_user_id.to_le_bytes());
        head.extend_from_slice(&user_count.to_le_bytes());
        crc.update(&head);
        out.write_all(&head)?;
        Ok(RolesWriter { out, crc, user_count, written: 0 })
    }

    /// Appends the next user's roles (at most 255).
    pub fn push(&mut self, roles: &[StoredRole]) -> io::Result<()> {
        assert!(self.written < self.user_count && roles.len() <= 255);
        let mut buf = [0u8; 11];
        let count = [roles.len() as u8];
        self.crc.update(&count);
        self.out.write_all(&count)?;
        for r in roles {
            buf[0] = r.game.0;
            buf[1] = r.zone_id;
            buf[2] = r.level;
            buf[3..].copy_from_slice(&r.role_id.to_le_bytes());
            self.crc.update(&buf);
            self.out.write_all(&buf)?;
        }
        self.written += 1;
        Ok(())
    }

    pub fn finish(mut self) -> io::Result<W> {
        assert_eq!(self.written, self.user_count);
        let crc = self.crc.clone().finalize();
        self.out.write_all(&crc.to_le_bytes())?;
        Ok(self.out)
    }
}

/// Streams `roles.bin`: calls `each(user_id, roles)` for every user, then checks the checksum.
pub fn read_roles(
    mut input: impl Read,
    mut each: impl FnMut(u64, &[StoredRole]),
) -> Result<(u64, u64), ProfileFileError> {
    let mut crc = crc32fast::Hasher::new();
    let mut head = [0u8; 40];
    input.read_exact(&mut head)?;
    crc.update(&head);
    if &head[..8] != ROLES_MAGIC {
        return Err(ProfileFileError::BadMagic);
    }
    let version = u32::from_le_bytes([head[8], head[9], head[10], head[11]]);
    if version != ROLES_VERSION {
        return Err(ProfileFileError::BadVersion(version));
    }
    let mut q = [0u8; 8];
    q.copy_from_slice(&head[16..24]);
    let seed = u64::from_le_bytes(q);
    q.copy_from_slice(&head[24..32]);
    let first = u64::from_le_bytes(q);
    q.copy_from_slice(&head[32..40]);
    let count = u64::from_le_bytes(q);
    let mut roles = Vec::with_capacity(255);
    let mut buf = [0u8; 11];
    for offset in 0..count {
        let mut n = [0u8; 1];
        input.read_exact(&mut n)?;
        crc.update(&n);
        roles.clear();
        for _ in 0..n[0] {
            input.read_exact(&mut buf)?;
            crc.update(&buf);
            q.copy_from_slice(&buf[3..]);
            roles.push(StoredRole {
                game: GameIndex(buf[0]),
                zone_id: buf[1],
                level: buf[2],
                role_id: u64::from_le_bytes(q),
            });
        }
        each(first + offset, &roles);
    }
    let mut stored = [0u8; 4];
    input.read_exact(&mut stored)?;
    if crc.finalize() != u32::from_le_bytes(stored) {
        return Err(ProfileFileError::Checksum);
    }
    Ok((seed, count))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(users: u64) -> ProfileHeader {
        ProfileHeader {
            seed: 9,
            first_user_id: 100,
            user_count: users,
            game_ids: vec!["a".into(), "b".into(), "c".into()],
        }
    }

    fn sample(i: u64) -> Profile {
        let mut preference = [0u8; MAX_GAMES];
        preference[..3].copy_from_slice(&[i as u8, (i * 3) as u8, 7]);
        Profile { registered: GameSet((i % 8) as u16), preference }
    }

    fn file(users: u64) -> Vec<u8> {
        let mut w = ProfileWriter::new(Vec::new(), header(users)).unwrap();
        for i in 0..users {
            w.push(&sample(i)).unwrap();
        }
        w.finish().unwrap()
    }

    #[test]
    fn round_trip_and_unknown_users_are_new() {
        let bytes = file(1000);
        let t = ProfileTable::read(&bytes[..]).unwrap();
        assert_eq!(t.header(), &header(1000));
        assert_eq!(t.resident_bytes(), 1000 * 5);
        for i in 0..1000 {
            assert_eq!(t.get(100 + i), sample(i));
        }
        assert_eq!(t.get(99), Profile::NEW_USER);
        assert_eq!(t.get(1100), Profile::NEW_USER);
        assert_eq!(t.get(u64::MAX), Profile::NEW_USER);
    }

    #[test]
    fn damage_is_detected() {
        let bytes = file(100);
        let mut flipped = bytes.clone();
        flipped[60] ^= 1;
        assert!(matches!(ProfileTable::read(&flipped[..]), Err(ProfileFileError::Checksum)));
        assert!(matches!(
            ProfileTable::read(&bytes[..bytes.len() - 10]),
            Err(ProfileFileError::Corrupt(_))
        ));
        let mut magic = bytes.clone();
        magic[0] = b'X';
        assert!(matches!(ProfileTable::read(&magic[..]), Err(ProfileFileError::BadMagic)));
        let mut version = bytes.clone();
        version[8] = 9;
        assert!(matches!(ProfileTable::read(&version[..]), Err(ProfileFileError::BadVersion(9))));
        let mut huge = bytes;
        huge[39] = 0xFF;
        assert!(matches!(ProfileTable::read(&huge[..]), Err(ProfileFileError::Corrupt(_))));
    }

    #[test]
    fn roles_round_trip() {
        let mut w = RolesWriter::new(Vec::new(), 5, 100, 3, 2).unwrap();
        let r = |g, z, id| StoredRole { game: GameIndex(g), zone_id: z, level: 3, role_id: id };
        let users = [vec![], vec![r(0, 1, 11)], vec![r(0, 2, 12), r(1, 8, 13)]];
        for u in &users {
            w.push(u).unwrap();
        }
        let bytes = w.finish().unwrap();
        let mut seen = Vec::new();
        let (seed, count) =
            read_roles(&bytes[..], |user, roles| seen.push((user, roles.to_vec()))).unwrap();
        assert_eq!((seed, count), (5, 3));
        assert_eq!(
            seen,
            vec![(100, users[0].clone()), (101, users[1].clone()), (102, users[2].clone())]
        );
        let mut bad = bytes;
        bad[45] ^= 0x40;
        assert!(read_roles(&bad[..], |_, _| {}).is_err());
    }
}
