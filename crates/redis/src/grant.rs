//! The grab: `lua/grant.lua` and its reply.

use hongbao_store::{GrantOutcome, GrantRequest, StoreError};
use redis::Value;

use crate::claim::{int, text};
use crate::{RedisLedger, lua_limit, store_error};

pub(crate) async fn grant(
    ledger: &RedisLedger,
    req: GrantRequest,
) -> Result<GrantOutcome, StoreError> {
    let keys = ledger.keys.grant(req.channel);
    let reply: Value = ledger
        .grant_script
        .key(keys.granted)
        .key(keys.users)
        .arg(req.user)
        .arg(req.per_user_limit)
        .arg(lua_limit(req.budget))
        .invoke_async(&mut ledger.conn.clone())
        .await
        .map_err(store_error)?;
    let Value::Array(parts) = reply else {
        return Err(bad_reply(&reply));
    };
    let [outcome, granted, serial] = parts.as_slice() else {
        return Err(bad_reply(&Value::Array(parts)));
    };
    let granted = u64::try_from(int(granted)?).map_err(|_| bad_reply(granted))?;
    ledger.saw_granted(req.channel, granted);
    Ok(match text(outcome)? {
        "granted" => {
            let serial = u32::try_from(int(serial)?).map_err(|_| bad_reply(serial))?;
            GrantOutcome::Granted { serial }
        }
        "budget" => GrantOutcome::BudgetExhausted,
        "limit" => GrantOutcome::UserLimitReached,
        _ => return Err(bad_reply(outcome)),
    })
}

fn bad_reply(value: &Value) -> StoreError {
    StoreError::Corrupt(format!("unexpected reply of the grant script: {value:?}"))
}
