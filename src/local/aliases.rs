//! The aliases file: `name: target, target…` (Postfix/sendmail syntax, without the
//! `:include:` and `|command` forms, which postling does not support by design).
