# Les messages français du portail.
product = medmesh
layout-skip = Aller au contenu
layout-nav = Principal
layout-sign-out = Se déconnecter
layout-signed-in-as = Connecté en tant que

nav-home = Accueil
nav-record = Mon dossier
nav-sharing = Partage
nav-my-data = Mes données
nav-documents = Documents
nav-access-log = Journal des accès
nav-sessions = Sessions

problem-not-found = Introuvable
problem-not-found-detail = Il n’y a rien ici pour vous. Si vous avez suivi un lien, il a peut-être expiré.
problem-wrong-audience = Pas pour ce compte
problem-wrong-audience-detail = Cette page est destinée à un autre type de compte.
problem-unavailable = Indisponible pour le moment
problem-unavailable-detail = Le nœud n’a pas pu répondre. Veuillez réessayer dans un instant.

mydata-title = Mes données
mydata-export = Télécharger mon dossier
mydata-export-intro = Tout votre dossier en un seul Bundle FHIR R4 (JSON), lisible par d’autres applications et services de santé. Le fichier est produit pour vous maintenant et n’est pas conservé sur le nœud.
mydata-export-button = Télécharger mon dossier (FHIR JSON)
mydata-research = Usage pour la recherche
mydata-research-legend = Des chercheurs peuvent-ils utiliser vos données, sans votre nom ?
mydata-research-in = Oui, mes données peuvent servir à la recherche
mydata-research-out = Non, mes données ne doivent pas servir à la recherche
mydata-research-save = Enregistrer mon choix
mydata-research-is-in = Vous avez accepté l’usage pour la recherche le { $date }.
mydata-research-is-out = Vous avez refusé l’usage pour la recherche le { $date }.
mydata-research-never = Vous n’avez pas encore choisi : vos données ne servent pas à la recherche.
problem-forbidden = Ce formulaire a expiré
problem-forbidden-detail = Revenez en arrière, rechargez la page et réessayez.
problem-bad-input = Ce choix n’est pas proposé
problem-bad-input-detail = Revenez en arrière et choisissez une des options affichées.

home-title = Accueil
home-greeting = Bienvenue, { $name }.
home-results = Nouveaux résultats
home-results-none = Aucun résultat pour l’instant.
home-results-more = Tous les résultats et leur évolution
home-documents = Documents récents
home-documents-none = Aucun document pour l’instant.
home-documents-more = Tous les documents
home-document = Document
home-accesses = Derniers accès à votre dossier
home-accesses-none = Personne n’a encore accédé à votre dossier.
home-accesses-more = Le journal complet des accès, vérifié

record-title = Mon dossier
record-conditions = Problèmes de santé
record-conditions-none = Aucun problème de santé enregistré.
record-medications = Médicaments
record-medications-none = Aucun médicament enregistré.
record-allergies = Allergies
record-allergies-none = Aucune allergie enregistrée.
record-immunizations = Vaccinations
record-immunizations-none = Aucune vaccination enregistrée.
record-encounters = Consultations
record-encounters-none = Aucune consultation enregistrée.
record-encounter = Consultation
record-results = Résultats et constantes
record-results-none = Aucun résultat enregistré.
record-results-count = { $count ->
    [one] { $count } résultat
   *[other] { $count } résultats
}
record-value = Valeur
record-date = Date
record-range = Valeurs de référence
record-range-typical = Valeurs usuelles chez l’adulte
record-values = Toutes les valeurs
record-latest = Dernière valeur

chart-title = Évolution : { $name }
chart-description = { $count } valeurs du { $first } au { $last } ; { $abnormal ->
    [0] aucune hors des valeurs de référence.
    [one] une hors des valeurs de référence.
   *[other] { $abnormal } hors des valeurs de référence.
}

sharing-title = Partage
sharing-intro = Ces personnes et organisations peuvent voir votre dossier, et voici pourquoi. Un changement prend effet dès la requête suivante.
sharing-now = Qui peut voir votre dossier aujourd’hui
sharing-past = Accès terminés
sharing-none = Personne.
sharing-who = Qui
sharing-why = Pourquoi
sharing-since = Depuis
sharing-until = Jusqu’au
sharing-open = Sans date de fin
sharing-emergency = Accès d’urgence
sharing-unnamed = { $reference }
why-care-team = Membre de votre équipe de soins
why-general-practitioner = Votre médecin traitant
why-referral = Vous leur avez été adressé
why-encounter = Une consultation avec eux
why-consent = Vous avez donné votre consentement
why-shared = Une de vos règles de partage
why-break-glass = A déclaré une urgence

flag-normal = Normal
flag-low = Bas
flag-high = Élevé
flag-abnormal = Anormal

status-active = Actif
status-recurrence = Récidive
status-relapse = Rechute
status-inactive = Inactif
status-remission = En rémission
status-resolved = Résolu
status-completed = Terminé
status-stopped = Arrêté
status-on-hold = Suspendu
status-cancelled = Annulé
status-entered-in-error = Saisi par erreur
status-not-done = Non fait
status-draft = Brouillon
status-intended = Prévu
status-unknown = Inconnu

criticality-low = Risque faible
criticality-high = Risque élevé
criticality-unable-to-assess = Risque non évalué

action-read = A consulté votre dossier
action-vread = A consulté une version passée
action-search = A cherché dans votre dossier
action-create = A ajouté à votre dossier
action-update = A modifié votre dossier
action-delete = A supprimé de votre dossier
action-read-audit-log = A consulté votre journal des accès
action-export = A exporté votre dossier
action-everything = A consulté tout votre dossier

who-you = Vous
who-account = { $name } ({ $role })
who-service = Service « { $name } »
role-patient = patient
role-practitioner = soignant
role-org-admin = administrateur de l’organisation
role-node-admin = administrateur du nœud
role-researcher = chercheur
action-other = A accédé à votre dossier
action-login = Connexion

datetime-format = { $date } à { $time }
date-format = { $day } { $month } { $year }
month-1 = janv.
month-2 = févr.
month-3 = mars
month-4 = avr.
month-5 = mai
month-6 = juin
month-7 = juil.
month-8 = août
month-9 = sept.
month-10 = oct.
month-11 = nov.
month-12 = déc.

## Navigation (soignants, administrateurs, tous)
nav-account = Compte
nav-patients = Patients
nav-referrals = Adressages
nav-admin-users = Utilisateurs
nav-admin-clients = Applications
nav-admin-break-glass = Accès d'urgence à revoir
nav-admin-keys = Clés et journal

language-name = Français

## Dossier : documents
record-documents = Documents
record-documents-none = Aucun document.
record-document = Document

## Compte
account-title = Compte
account-language = Langue
account-language-label = Afficher les pages en
account-save = Enregistrer
account-two-factor = Connexion en deux étapes
account-two-factor-off = La connexion en deux étapes est désactivée. Activée, elle demande aussi un code affiché par une application sur votre téléphone.
account-two-factor-start = Activer la connexion en deux étapes
account-two-factor-scan = Scannez ce code avec une application d'authentification, puis saisissez le code à six chiffres qu'elle affiche.
account-two-factor-qr = Code QR pour votre application d'authentification
account-two-factor-manual = Impossible de scanner ? Saisissez plutôt ceci dans l'application
account-two-factor-code = Code à six chiffres
account-two-factor-confirm = Confirmer
account-two-factor-wrong = Ce code n'est pas le bon. Recommencez pour obtenir un nouveau code QR.
account-two-factor-restart = Recommencer
account-two-factor-now-on = La connexion en deux étapes est maintenant activée.
account-recovery-once = Ces codes de secours vous permettent d'entrer si vous perdez votre téléphone. Gardez-les en lieu sûr : ils ne sont affichés qu'une fois, et chacun ne sert qu'une fois.
account-two-factor-on = La connexion en deux étapes est activée.
account-two-factor-required = La connexion en deux étapes est activée, et obligatoire pour votre compte.
account-link = Relier votre dossier
account-link-intro = Votre cabinet peut vous donner un code à usage unique qui relie ce compte à votre dossier de santé.
account-link-code = Code à usage unique
account-link-submit = Relier mon dossier
account-link-wrong = Ce code n'est pas valable, ou a déjà servi.
account-sessions = Voir où vous êtes connecté, et déconnecter d'autres appareils

## Patients (soignants)
patients-title = Mes patients
patients-find = Trouver un patient
patients-name = Nom
patients-birthdate = Date de naissance
patients-identifier = Identifiant (IPP)
patients-search = Rechercher
patients-mine = Patients que vous suivez
patients-results = Résultats de la recherche
patients-none = Aucun patient trouvé parmi ceux que vous suivez.
patients-unnamed = (aucun nom au dossier)

## Accès d'urgence
emergency-title = Accès d'urgence (bris de glace)
emergency-intro = Pour un patient que vous ne suivez pas, en cas d'urgence seulement. Votre motif est conservé pour revue, chaque accès est signalé dans le journal du patient, et le patient en est informé.
emergency-time-box = { $hours ->
    [one] L'accès dure une heure.
   *[other] L'accès dure { $hours } heures.
}
emergency-patient = Numéro de dossier du patient
emergency-reason = Motif (obligatoire)
emergency-declare = Déclarer une urgence
emergency-banner = Accès d'urgence : chaque accès à ce dossier est signalé, revu et montré au patient. Il prend fin le { $until }.

## Dossier patient
chart-write = Ajouter au dossier
chart-refer = Adresser
chart-restricted = Restreint par le consentement du patient
chart-restricted-intro = Le patient ne vous a pas ouvert ces parties de son dossier. Demandez-lui si vous en avez besoin.

## Saisie
write-title = Ajouter au dossier de { $name }
write-back = Retour au dossier
write-observation = Une mesure
write-measurement = Ce qui a été mesuré
write-value = Valeur
write-date = Date
write-condition = Un problème de santé
write-condition-text = Problème de santé
write-onset = Depuis
write-allergy = Une allergie
write-substance = Substance
write-criticality = Gravité
write-note = Une note
write-note-title = Titre
write-note-text = Note
write-save = Enregistrer
write-documents = Pour déposer un document signé, utilisez

## Adressages
refer-title = Adresser { $name }
refer-directory = Trouver un confrère
refer-name = Nom
refer-specialty = Spécialité
refer-organization = Établissement
refer-found = Confrères trouvés
refer-none = Personne n'a été trouvé.
refer-reason = Motif de l'adressage
refer-send = Adresser à ce confrère
referrals-title = Adressages
referrals-incoming = Reçus
referrals-sent = Envoyés
referrals-none = Aucun.
referrals-from = De
referrals-to = À
referrals-patient = Patient
referrals-when = Envoyé le
referrals-status = État
referrals-accept = Accepter
referrals-accept-note = Accepter vous ouvre le dossier du patient, dans la limite de ses consentements.
referrals-patient-hidden = (nommé une fois accepté)
status-requested = Demandé
status-accepted = Accepté
status-rejected = Refusé
status-in-progress = En cours

## Partage : changements
sharing-saved = Enregistré. Le changement s'applique dès la prochaine requête.
sharing-change = Modifier
sharing-withdraw = Retirer
sharing-block = Bloquer
sharing-block-what = Ce qu'il faut bloquer
sharing-everything = Tout
sharing-referrals = Adressages vous concernant
sharing-no-referrals = Aucun adressage.
sharing-referral-accept = Accepter
sharing-referral-decline = Refuser
sharing-give = Donner accès à quelqu'un
sharing-find = Trouver un soignant ou un établissement
sharing-find-name = Nom
sharing-what = Ce qu'il peut voir
sharing-sensitive = Y compris les informations sensibles sur
sharing-until-date = Jusqu'au (facultatif)
sharing-grant = Donner accès
sharing-rule = Partager automatiquement désormais
sharing-rule-laboratory = Les nouveaux résultats de laboratoire
sharing-rule-vital-signs = Les nouvelles constantes
sharing-rule-set = Partager automatiquement
sharing-next-request = Chaque changement s'applique dès la prochaine requête.

## Catégories de données
type-Observation = Résultats et mesures
type-Condition = Problèmes de santé
type-MedicationRequest = Médicaments
type-AllergyIntolerance = Allergies
type-Immunization = Vaccinations
type-Encounter = Consultations
type-DocumentReference = Documents
label-R = informations restreintes
label-V = informations très restreintes
label-PSY = santé mentale
label-MH = santé mentale
label-BH = santé comportementale
label-SUD = consommation de substances
label-HIV = VIH
label-STD = infections sexuellement transmissibles
label-SEX = santé sexuelle
label-SDV = violences sexuelles et conjugales
label-ETH = traitement de l'alcoolisme et des addictions
label-GDIS = maladie génétique
label-SICKLE = drépanocytose

gender-male = homme
gender-female = femme
gender-other = autre
gender-unknown = sexe inconnu

analyte-8480-6 = Pression artérielle systolique
analyte-8462-4 = Pression artérielle diastolique
analyte-8867-4 = Fréquence cardiaque
analyte-29463-7 = Poids
analyte-8310-5 = Température
analyte-2339-0 = Glycémie
analyte-4548-4 = HbA1c
analyte-2093-3 = Cholestérol total
analyte-38483-4 = Créatinine

## Administration
admin-users-title = Utilisateurs
admin-practitioners = Soignants
admin-no-practitioners = Aucun compte de soignant.
admin-username = Nom d'utilisateur
admin-practitioner = Soignant
admin-status = État
admin-change = Modifier
admin-verify = Vérifier
admin-suspend = Suspendre
verification-verified = Vérifié
verification-unverified = Non vérifié
verification-suspended = Suspendu
admin-invite = Inviter quelqu'un
admin-invite-role = Rôle
admin-invite-practitioner = Identifiant de sa fiche Practitioner (pour un soignant)
admin-invite-make = Créer un code d'invitation
admin-invitation-made = Code d'invitation
admin-invitation-once = Donnez ce code à usage unique à la personne invitée ; il n'est affiché que maintenant et vaut sept jours.
admin-clients-title = Applications (clients OAuth)
admin-clients = Applications enregistrées
admin-no-clients = Aucune application enregistrée.
admin-client-name = Nom
admin-client-id = Identifiant client
admin-client-kind = Type
admin-client-redirects = URI de redirection
admin-client-scope = Portées autorisées
admin-client-created = Enregistrée le
admin-client-register = Enregistrer une application
admin-client-registered = Application enregistrée
admin-client-secret = Secret client
admin-client-secret-once = Le secret n'est affiché que maintenant ; le nœud n'en garde que l'empreinte.
client-kind-public = Publique (dans le navigateur ou sur un téléphone)
client-kind-confidential = Confidentielle (sur un serveur)
client-kind-backend = Service d'arrière-plan
admin-break-glass-title = Accès d'urgence à revoir
admin-break-glass-intro = Chaque accès d'urgence (bris de glace), du plus récent au plus ancien, avec le motif donné par le soignant.
admin-break-glass-none = Aucun accès d'urgence.
admin-break-glass-who = Soignant
admin-break-glass-patient = Dossier du patient
admin-break-glass-declared = Déclaré le
admin-break-glass-until = Jusqu'au
admin-break-glass-reason = Motif
admin-break-glass-active = En cours
admin-reason-gone = (effacé avec les données du patient)
admin-keys-title = Clés et journal d'audit
admin-keys-at-rest = Chiffrement au repos
admin-keys-on = Les données de santé sont chiffrées au repos, sous des clés de données enveloppées par une clé de chiffrement de clés (KEK).
admin-keys-off = Le chiffrement au repos est désactivé sur ce nœud.
admin-keys-current = KEK actuelle
admin-keys-reencryption = Rechiffrement
admin-keys-kek = KEK
admin-keys-data-keys = Clés de données enveloppées
admin-keys-rotate = La rotation se fait par l'opérateur du nœud, en ligne de commande :
admin-reencryption = { $state } (ligne { $row })
admin-reencryption-never = jamais lancé
admin-checkpoint = Dernier point de contrôle signé du journal d'audit
admin-checkpoint-none = Aucun point de contrôle n'a encore été signé.
admin-checkpoint-size = Entrées couvertes
admin-checkpoint-signed = Signé le

## Journal des accès
access-log-title = Qui a consulté mon dossier
access-log-intro = Chaque accès à votre dossier est écrit dans le journal signé du nœud. Cette page vérifie, dans votre propre navigateur, que la liste ci-dessous est complète : rien de caché, rien de retiré, et rien de réécrit depuis votre dernière visite.
access-log-checking = Vérification du journal…
access-log-caption = Accès à votre dossier, du plus récent au plus ancien
access-log-when = Quand
access-log-who = Qui
access-log-what = Quoi
access-log-why = Pourquoi
access-log-outcome = Résultat
access-log-how = Comment c'est vérifié
access-log-how-detail = Le nœud signe l'état du journal avec sa clé. La signature couvre aussi, pour chaque patient, le nombre d'accès de son journal et le plus récent. Chaque accès nomme le précédent : votre navigateur remonte du plus récent au premier et remarque tout trou. Il garde ce qu'il a vérifié et, à votre prochaine visite, vérifie que le nœud n'a fait qu'ajouter au journal. La clé du nœud :
access-log-verified-one = Vérifié par rapport au point de contrôle du { $asOf } : c'est le seul accès à votre dossier.
access-log-verified-other = Vérifié par rapport au point de contrôle du { $asOf } : voici les { $n } accès à votre dossier, sans exception.
access-log-witnessed-one = { $count } témoin indépendant ({ $names }) a confirmé que le nœud montre à tous ce même journal, vérifié au { $since }.
access-log-witnessed-other = { $count } témoins indépendants ({ $names }) ont confirmé que le nœud montre à tous ce même journal, vérifié au { $since }.
access-log-unwitnessed = Aucun témoin indépendant n'a encore confirmé ce journal.
access-log-policy-changed = Le nœud liste maintenant d'autres témoins qu'à votre première visite ; ceux que vous aviez gardés ont été vérifiés.
access-log-failed = Non vérifié : { $reason }. Prévenez l'opérateur du nœud ou votre équipe soignante.
access-log-key-changed = Non vérifié : le nœud signe désormais son journal avec une autre clé qu'à votre dernière visite.
access-log-nothing = Rien n'a encore été journalisé.
access-log-unchecked = Le journal n'a pas pu être vérifié : { $error }
access-log-own-access = votre propre accès, ou le nœud
access-log-emergency = Accès d'urgence
access-log-success = Autorisé
access-log-denied = Refusé
access-log-failure = Échec
action-login-second-factor = S'est connecté (deuxième étape)
action-break-glass = A déclaré une urgence
action-withheld = A vu ce que votre consentement retient
action-referral-inbox = A listé ses adressages
action-accept-referral = A accepté un adressage
chart-invite = Inviter sur le portail patient
chart-invitation = Invitation au portail
chart-invitation-once = Donnez ce code à usage unique au patient : il crée son compte avec lui sur /register, et le code relie le compte à ce dossier. Il n'est affiché que maintenant et vaut sept jours.
home-requests = Demandes et avis
home-requests-none = Rien ne vous attend.
home-requests-more = Partage et adressages
home-referral = Vous avez été adressé à { $name }
home-referral-from = Un adressage de { $name }
home-referrals = Adressages en attente
home-referrals-none = Aucun adressage en attente.
home-referrals-more = Tous les adressages
home-patients = Trouvez un patient que vous suivez, ou déclarez un accès d'urgence.
home-patients-more = Vos patients
home-verification = Soignants à vérifier
home-verification-none = Personne n'attend.
home-emergencies = Accès d'urgence en cours
notification-break-glass = Un accès d'urgence à votre dossier a été déclaré. Il est signalé dans votre journal des accès.
documents-title = Documents
documents-intro = Vos documents. Un document signé a été vérifié avec la clé de son auteur lors du dépôt ; chaque ouverture vérifie le fichier avec l'empreinte (SHA-256) enregistrée, si bien qu'un fichier modifié n'est jamais remis.
documents-upload = Déposer un document signé
documents-signed = Signé par { $name } le { $when } ; la signature a été vérifiée, et le fichier est contrôlé à chaque ouverture.
documents-unsigned = Non signé ; le fichier est contrôlé avec son empreinte à chaque ouverture.
documents-inline = Conservé dans le dossier lui-même.
documents-sealed = Scellé de bout en bout : seuls les appareils pour lesquels il a été scellé peuvent l'ouvrir.
documents-view = Voir
documents-download = Télécharger

## Connexion, inscription, sessions, dépôts signés
sign-in-title = Se connecter
sign-in-username = Nom d'utilisateur
sign-in-password = Mot de passe
sign-in-submit = Se connecter
sign-in-with = Se connecter avec { $provider }
sign-in-register = Créer un compte
sign-in-again = Se reconnecter
sign-in-throttled = Trop d'essais manqués ; réessayez dans { $seconds } secondes.
sign-in-bad-credentials = Le nom d'utilisateur ou le mot de passe est faux.
sign-in-bad-code = Ce code n'est pas le bon, ou a déjà servi.
code-title = Saisissez votre code
code-enrol = Votre compte exige la connexion en deux étapes. Scannez ce code avec une application d'authentification, puis saisissez les six chiffres qu'elle affiche.
code-by-hand = Ou saisissez cette clé à la main :
code-enter = Saisissez le code à six chiffres de votre application d'authentification, ou l'un de vos codes de secours.
code-label = Code
code-submit = Continuer
recovery-title = Gardez vos codes de secours
recovery-text = Chaque code vous connecte une fois si vous perdez votre application. Ils ne sont affichés que maintenant.
recovery-continue = Continuer
register-title = Créer votre compte
register-intro = Avec le code d'invitation donné par votre cabinet, votre compte est relié à votre dossier. Sans code, si ce nœud le permet, vous pourrez relier votre dossier plus tard.
register-invitation = Code d'invitation (si vous en avez un)
register-password = Mot de passe (au moins 12 caractères)
register-submit = Créer le compte
register-have-account = J'ai déjà un compte
register-weak-password = Ce mot de passe est trop faible : au moins 12 caractères, et pas votre nom d'utilisateur.
register-taken = Ce nom d'utilisateur est déjà pris.
register-bad-invitation = Ce code d'invitation n'est pas valable, a déjà servi ou a expiré.
register-closed = Ce nœud ne permet pas de créer un compte sans invitation.
registered-title = Compte créé
registered-text = Votre compte est prêt. Connectez-vous pour continuer.
signed-out-title = Déconnecté
signed-out-text = Vous êtes déconnecté.
sessions-title = Vos sessions
sessions-signed-in = Connecté le
sessions-browser = Navigateur
sessions-from = Depuis
sessions-this-one = Celle-ci
sessions-end = Terminer
upload-title = Déposer un document signé
upload-preparing = Préparation de la clé de signature de ce navigateur…
upload-key-ready = Ce navigateur signe en tant que { $owner } avec la clé { $key } ; sa moitié privée ne peut pas être exportée.
upload-no-key = Aucune clé de signature : { $error }
upload-done = Signé et déposé : Binary/{ $id }
upload-failed = Non déposé : { $error }
upload-patient = Identifiant du dossier du patient
upload-doc-title = Titre (ASCII)
upload-type = Type de document (système|code)
upload-file = Fichier
upload-submit = Signer et déposer

## L'écran de consentement OAuth
consent-title = { $app } demande l'accès
consent-intro = Décochez ce que vous ne voulez pas partager. L'application n'obtient que ce qui reste coché, et seulement le temps de son accès.
consent-what = Ce que l'application peut faire
consent-patient = Patient (identifiant du dossier)
consent-allow = Autoriser
consent-deny = Refuser
consent-later = Vous pouvez voir et mettre fin à l'accès d'une application depuis vos pages de sessions et de partage.
scope-identity = Savoir qui vous êtes
scope-offline = Garder l'accès après la fermeture de l'application
scope-online = Garder l'accès tant que vous êtes connecté
scope-launch = Savoir quel dossier patient est ouvert
scope-read = lire
scope-write = ajouter et modifier
scope-delete = supprimer
scope-all-types = tous les types de données
scope-patient = d'un patient :
scope-user = des dossiers que vous voyez :
scope-system = tout :
scope-data = { $verbs } { $whose } { $what }
scope-other = Autre accès
