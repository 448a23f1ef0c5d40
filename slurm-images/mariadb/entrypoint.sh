# Prepare the accounting database, then run mariadbd as `mysql` in the foreground.
#   MARIADB_PASSWORD_FILE  the slurmdbd user's password (default /etc/mariadb-secret/password)
#   MARIADB_DATABASE       database to create (default slurm_acct_db)
#   MARIADB_USER           user to create with all rights on it (default slurm)
set -eu
pass_file="${MARIADB_PASSWORD_FILE:-/etc/mariadb-secret/password}"
db="${MARIADB_DATABASE:-slurm_acct_db}"
user="${MARIADB_USER:-slurm}"
if [ ! -r "$pass_file" ]; then
    echo "sunk-mariadb: error: no password at $pass_file; mount the database password Secret there" >&2
    exit 64
fi
pass="$(tr -d '\n' < "$pass_file" | sed "s/'/''/g")"
install -d -o mysql -g mysql /run/mysqld
[ -d /var/lib/mysql/mysql ] || mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null
mariadbd --user=mysql --bootstrap <<SQL
FLUSH PRIVILEGES;
CREATE DATABASE IF NOT EXISTS \`$db\`;
CREATE USER IF NOT EXISTS '$user'@'%' IDENTIFIED BY '$pass';
ALTER USER '$user'@'%' IDENTIFIED BY '$pass';
GRANT ALL ON \`$db\`.* TO '$user'@'%';
SQL
echo "sunk-mariadb: database $db ready for user $user" >&2
exec mariadbd --user=mysql --bind-address=0.0.0.0 --skip-name-resolve
