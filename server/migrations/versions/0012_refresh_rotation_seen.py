"""refresh rotation seen: whether the newest refresh token's access tokens were ever used

Revision ID: 0012
Revises: 0011

A client whose renewal answer was lost (a dropped connection after the server rotated the refresh token)
comes back with the token just replaced. The server took that for a stolen copy and revoked the login, so a
replica was logged out for good when its next sync came more than the retry window later. Each rotation now
has a number (``rotation``), every access token names the rotation that issued it (claim ``rot``), and
``rotation_seen`` records that an access token of the newest rotation was used. While it was not, the token
just replaced is taken as a retry whenever it comes back (the answer never arrived: nobody used it); once
it was, the replaced token coming back is a copy and revokes the login, as before.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("auth_sessions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("rotation", sa.Integer(), nullable=False, server_default="0"))
        # logins rotated before this are taken as seen: their replaced tokens keep revoking at once
        batch_op.add_column(
            sa.Column("rotation_seen", sa.Boolean(), nullable=False, server_default=sa.true())
        )


def downgrade() -> None:
    with op.batch_alter_table("auth_sessions", schema=None) as batch_op:
        batch_op.drop_column("rotation_seen")
        batch_op.drop_column("rotation")
